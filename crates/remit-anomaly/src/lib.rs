//! Behaviour baselines and anomaly detectors for remit's identities and credentials.
//!
//! Pure: no IO and no clock of its own. The caller owns the state ([`Baselines`]), passes
//! every request in as an [`Observation`] with its time, and gets back an [`Assessment`]
//! (signals and a `risk` score 0–100 for the policy context) and, once the verdict is
//! known, [`Alert`]s. Each identity's baseline has a fixed memory bound
//! ([`IdentityBaseline::MAX_BYTES`]) and serialises with serde, so baselines survive a
//! restart.
//!
//! ```text
//! Observation ──► Detectors::assess(&Baselines) ──► Assessment { signals, risk }   (before Cedar)
//!             ──► Detectors::record(&mut Baselines, verdict) ──► Vec<Alert>         (after)
//! ```
//!
//! [`sim`] is a traffic simulator that drives the real pipeline (`Engine::decide`) with a
//! simulated clock and measures the detectors on injected incidents.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod baseline;
pub mod detect;
pub mod observe;
pub mod score;
pub mod set;
pub mod settings;
pub mod sim;

pub use baseline::{Baselines, CredentialBaseline, IdentityBaseline, StateError};
pub use detect::{Alert, AlertId, Assessment, Detector, Detectors, Risk, Signal};
pub use observe::{ClientFamily, Edge, Network, Observation, UnixSeconds};
pub use score::{Scorer, record_decided};
pub use settings::{Confidence, Learning, Settings, SettingsError};
