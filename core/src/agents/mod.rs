//! Adapters for the coding agents memtray serves: how each one's hooks, transcripts and settings map onto
//! the core's intake. Claude Code is the first.

pub mod claude_code;
