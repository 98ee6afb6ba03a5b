//! The node agent's parts (`--mode node`). Built so far: the CRI log format, the tailer of
//! the node's container log files, and the disk buffer. Not built yet: the OTLP receiver,
//! enrichment from the node's pods, usage reports, and the `--mode node` wiring (issue 6).

pub mod buffer;
pub mod cri;
pub mod tail;
