//! HTTP plumbing below both the operations API (`api`) and the customer-facing
//! text channels (`channel::chat`): the route table with declared permissions
//! (`routes`), errors as JSON with a reason (`error`), per-client budgets (`rate`),
//! and the listener with its connection caps and header and body timeouts
//! (`listen`). It knows no route of its own.

pub mod embed;
pub mod error;
pub mod listen;
pub mod rate;
pub mod routes;

pub use error::ApiError;

/// The largest request body any route accepts (a knowledge-base upload).
pub const MAX_BODY: usize = 1024 * 1024 + 4096;
