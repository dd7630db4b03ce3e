//! remit's vocabulary and the pure parts of the pipeline: configuration parsing, the
//! identity registry, the route table, canonical paths, request facts, classification and
//! decisions. Nothing in this crate does IO.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod approval;
pub mod classify;
pub mod config;
pub mod decision;
pub mod identity;
pub mod mcp;
pub mod names;
pub mod path;
pub mod records;
pub mod request;
pub mod route;
pub mod scan;
pub mod single_use;
pub mod tokens;
pub mod vocab;

pub use classify::{Authn, Classification};
pub use config::{Config, ConfigError};
pub use decision::{
    AlertNote, ApprovalRecord, ApprovalRequest, AuditRecord, Decision, DecisionRecord,
    OutcomeRecord, Queued, RateLimitState, RecordSink, ReviewNote, SinkError, TokenRecord,
};
pub use identity::{Identity, Registry};
pub use names::{
    ActionName, CredentialId, IdentityId, Owner, Purpose, ResourceType, SpiffeId, TrustDomain,
};
pub use path::CanonicalPath;
pub use request::{BearerToken, RequestError, RequestFacts, ScannedHeaders};
pub use route::{ResourceRef, RouteTable, Scope};
pub use scan::{Oversize, ScanAction, ScanReport, ScanSettings, SecretFinding};
pub use vocab::{
    Authority, AuthorityKind, Class, Kind, Obligation, Principal, Rate, Status, Verdict,
};
