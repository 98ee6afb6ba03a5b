//! The node agent's parts (`--mode node`). Built so far: the CRI log format and the tailer
//! of the node's container log files. Not built yet: the OTLP receiver, enrichment from the
//! node's pods, the disk buffer, usage reports, and the `--mode node` wiring (issue 6).

pub mod cri;
pub mod tail;
