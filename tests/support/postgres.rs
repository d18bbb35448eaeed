//! A throwaway PostgreSQL cluster from Debian's `postgresql` package (`initdb` and `pg_ctl` in
//! /usr/lib/postgresql/<version>/bin) in a temp folder on a free loopback port, removed on drop; and the
//! team server (`memtray serve --team`) as a child process against it, and local memtrays linked to it
//! ([`machine`]). PostgreSQL refuses to run as root, so under root the cluster runs as the `postgres` user.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running cluster; stopped and removed on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (`make deps` installs Debian's postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    versions.pop().expect("a PostgreSQL with initdb under /usr/lib/postgresql")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Postgres {
    /// initdb + pg_ctl start, waiting until it accepts connections.
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new().prefix("memtray-pg").tempdir().expect("tempdir");
        if is_root() {
            let ok = Command::new("chown").arg("-R").arg("postgres:postgres").arg(dir.path()).status().unwrap();
            assert!(ok.success(), "chown the cluster's folder to postgres");
        }
        let pg = Postgres { dir, bin: pg_bin(), port: free_port() };
        let data = pg.dir.path().join("data");
        pg.run("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
        pg.start_server();
        pg
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(self.dir.path()).stdout(Stdio::null());
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program).args(args).stderr(Stdio::piped()).output().expect(program);
        assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn start_server(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("postgres.log");
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "-w", "start"]);
    }

    /// Stops as a crash would (`-m immediate`: no checkpoint, recovery at the next start), then starts.
    pub fn restart(&self) {
        let data = self.dir.path().join("data");
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
        self.start_server();
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// One value from `psql -At`.
    pub fn query(&self, sql: &str) -> String {
        let output = self
            .command("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-At", "-c", sql])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("psql");
        assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// One number from `psql`; the memories table may not exist yet (0 then).
    pub fn count(&self, sql: &str) -> i64 {
        self.query(sql).parse().unwrap_or_else(|_| panic!("{sql} is not a number"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.command("pg_ctl").args(["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]).status();
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `memtray serve --team` against a database; killed on drop.
pub struct TeamServer {
    database_url: String,
    pub port: u16,
    child: Option<Child>,
}

impl TeamServer {
    pub fn start(pg: &Postgres) -> TeamServer {
        let mut server = TeamServer { database_url: pg.url(), port: 0, child: None };
        server.spawn();
        server
    }

    /// Starts (again) on the port it had, or on a free one the first time.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut child = self
            .command("serve")
            .arg("--team")
            .env("MEMTRAY_TEAM_LISTEN", format!("127.0.0.1:{}", self.port))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn memtray serve --team");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read ready line");
        self.port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no ready line from memtray serve --team, got {line:?}"));
        self.child = Some(child);
    }

    /// A `memtray` command against this team server's database (`memtray team …`).
    pub fn command(&self, subcommand: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_memtray"));
        cmd.arg(subcommand)
            .env("MEMTRAY_TEAM_DATABASE_URL", &self.database_url)
            .env("MEMTRAY_CONFIG", "/nonexistent/memtray-team-test.toml")
            .env("MEMTRAY_DATA_DIR", std::env::temp_dir().join("memtray-team-admin-unused"))
            .env("MEMTRAY_LOG", "warn")
            .env_remove("MEMTRAY_TEAM_URL")
            .env_remove("MEMTRAY_TEAM_KEY");
        cmd
    }

    /// `memtray team add-member NAME --project P…`: the key it printed.
    pub fn add_member(&self, name: &str, projects: &[&str], extra: &[&str]) -> String {
        let mut cmd = self.command("team");
        cmd.args(["add-member", name]).args(extra);
        for p in projects {
            cmd.args(["--project", p]);
        }
        let output = cmd.stderr(Stdio::piped()).output().expect("memtray team add-member");
        assert!(output.status.success(), "add-member: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// `memtray team ARGS…`, which must succeed.
    pub fn admin(&self, args: &[&str]) -> String {
        let output = self.command("team").args(args).stderr(Stdio::piped()).output().expect("memtray team");
        assert!(output.status.success(), "team {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }
}

impl Drop for TeamServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A local memtray with its own home folder, removed with it.
pub struct Machine {
    pub server: super::TestServer,
    _home: tempfile::TempDir,
}

impl std::ops::Deref for Machine {
    type Target = super::TestServer;
    fn deref(&self) -> &super::TestServer {
        &self.server
    }
}

/// A local memtray linked to `team` with `key`, sharing `share`, syncing every `sync_ms`, with `extra`
/// environment.
pub fn machine(team: &TeamServer, key: &str, share: &str, sync_ms: &str, extra: &[(&str, &str)]) -> Machine {
    let home = tempfile::tempdir().unwrap();
    let url = team.url();
    let mut env = vec![
        ("HOME", home.path().to_str().unwrap()),
        ("MEMTRAY_TEAM_URL", url.as_str()),
        ("MEMTRAY_TEAM_KEY", key),
        ("MEMTRAY_TEAM_SHARE", share),
        ("MEMTRAY_TEAM_SYNC_MS", sync_ms),
    ];
    env.extend_from_slice(extra);
    let server = super::TestServer::start(&env);
    Machine { server, _home: home }
}
