//! The mcp-ledger operator library. The binaries in `src/bin` only wire it up.

pub mod generate;
