//! Recall: memory read back for an agent at work. The recent-context text of a project (`context`), the
//! MCP server that lets an agent search and read its memory (`mcp`), and the UTC dates both show (`dates`).
//!
//! Everything here reads; the search itself is SQL in `store::search`, shared with the HTTP API.

pub mod context;
pub mod dates;
pub mod mcp;
