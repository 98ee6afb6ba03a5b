//! The mcp-ledger operator library. The binaries in `src/bin` only wire it up.
//!
//! Decisions are pure functions with unit tests ([`inject`], [`inventory`], [`render`],
//! [`admission`]); the controllers, the webhook server and the inventory API only fetch,
//! call those functions and write.

pub mod admission;
pub mod api;
pub mod cache;
pub mod controller;
pub mod error;
pub mod generate;
pub mod inject;
pub mod inventory;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod render;
pub mod webhook;
