//! The engine a request runs through, below the HTTP front and the
//! database: the validated configuration and the runtime snapshot composed
//! from it, providers and their upstream HTTP clients, routing, retries,
//! breakers and limits, the dispatch of a plan, and the one finaliser that
//! meters every request. No database and no HTTP handlers live here: the
//! store implements [`usage::BatchSink`] and builds the
//! [`config::catalog::DbLayer`]; the server decodes client requests and
//! renders answers.

pub mod apps;
pub mod auth;
pub mod config;
pub mod error;
pub mod govern;
pub mod http1;
pub mod identity;
pub mod lifecycle;
pub mod meter;
pub mod presets;
pub mod providers;
pub mod routing;
pub mod snapshot;
pub mod usage;
pub mod util;
pub mod workers;
