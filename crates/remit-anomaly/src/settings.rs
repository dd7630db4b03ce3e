//! Detector settings: the learning period, thresholds and windows, validated once.

use serde::{Deserialize, Serialize};

/// How sure a detector is, in percent (0–100). Integer, so records stay canonical JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Confidence(u8);

impl Confidence {
    /// A confidence, clamped to 100.
    pub const fn percent(p: u8) -> Self {
        Self(if p > 100 { 100 } else { p })
    }

    /// The percentage.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// As a probability in `0.0..=1.0`.
    pub fn probability(self) -> f32 {
        f32::from(self.0) / 100.0
    }
}

/// When an identity stops learning and starts being watched: once it has made `requests`
/// requests **and** `duration_s` seconds have passed since its first one. Either may be 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learning {
    /// Requests seen before watching starts.
    pub requests: u32,
    /// Seconds since the first request before watching starts.
    pub duration_s: u64,
}

/// Why settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A value is outside its allowed range.
    #[error("anomaly setting `{field}` is {value}; it must be {rule}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// The allowed range, in words.
        rule: &'static str,
    },
}

/// Everything the detectors can be tuned by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The learning period per identity.
    pub learning: Learning,
    /// Signals at or above this confidence become alerts; lower ones only raise `risk`.
    pub alert_threshold: Confidence,
    /// After an alert, the same detector does not alert again for the same identity for
    /// this long (its signals still raise `risk`).
    pub cooldown_s: u64,
    /// Most identities tracked. At the limit, a new identity is not tracked (no baseline,
    /// no signals, risk 0) and counted in [`crate::Baselines::untracked`].
    pub max_identities: usize,
    /// A minute with fewer requests than this is never a rate spike.
    pub min_burst: u32,
    /// A minute is a spike when it exceeds this multiple of the usual rate for the hour.
    pub spike_factor: f32,
    /// The window in which denials and first uses of capabilities count as probing.
    pub probe_window_s: u64,
    /// Denials plus first uses within the window that make probing.
    pub probe_events: u16,
    /// After probing, how long a burst still counts as "probing, then a burst".
    pub burst_after_probe_s: u64,
    /// Two networks within this many seconds on one credential are concurrent use.
    pub concurrent_window_s: u64,
    /// A gap shorter than this is never dormancy.
    pub dormancy_min_s: u64,
    /// A gap is dormancy when it is also this many times the longest gap seen before.
    pub dormancy_factor: u32,
    /// An identity's remembered risk halves every this many seconds.
    pub risk_half_life_s: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            learning: Learning {
                requests: 200,
                duration_s: 3 * 86_400,
            },
            alert_threshold: Confidence::percent(50),
            cooldown_s: 3600,
            max_identities: 1_000_000,
            min_burst: 30,
            spike_factor: 4.0,
            probe_window_s: 600,
            probe_events: 3,
            burst_after_probe_s: 1800,
            concurrent_window_s: 120,
            dormancy_min_s: 7 * 86_400,
            dormancy_factor: 4,
            risk_half_life_s: 900,
        }
    }
}

impl Settings {
    /// Checks every value against its range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let range = |field: &'static str, ok: bool, value: String, rule: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(SettingsError::OutOfRange { field, value, rule })
            }
        };
        range(
            "alert_threshold",
            (1..=100).contains(&self.alert_threshold.get()),
            self.alert_threshold.get().to_string(),
            "between 1 and 100",
        )?;
        range(
            "max_identities",
            (1..=100_000_000).contains(&self.max_identities),
            self.max_identities.to_string(),
            "between 1 and 100000000",
        )?;
        range(
            "min_burst",
            self.min_burst >= 2,
            self.min_burst.to_string(),
            "at least 2",
        )?;
        range(
            "spike_factor",
            self.spike_factor.is_finite() && (1.5..=1000.0).contains(&self.spike_factor),
            self.spike_factor.to_string(),
            "between 1.5 and 1000",
        )?;
        range(
            "probe_events",
            (2..=1000).contains(&self.probe_events),
            self.probe_events.to_string(),
            "between 2 and 1000",
        )?;
        range(
            "dormancy_factor",
            self.dormancy_factor >= 2,
            self.dormancy_factor.to_string(),
            "at least 2",
        )?;
        for (field, v) in [
            ("probe_window_s", self.probe_window_s),
            ("concurrent_window_s", self.concurrent_window_s),
            ("risk_half_life_s", self.risk_half_life_s),
            ("dormancy_min_s", self.dormancy_min_s),
        ] {
            range(
                field,
                (1..=365 * 86_400).contains(&v),
                v.to_string(),
                "between 1 second and 365 days",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert_eq!(Settings::default().validate(), Ok(()));
        type Edit = fn(&mut Settings);
        let cases: [(Edit, &str); 5] = [
            (
                |s| s.alert_threshold = Confidence::percent(0),
                "alert_threshold",
            ),
            (|s| s.spike_factor = f32::NAN, "spike_factor"),
            (|s| s.min_burst = 1, "min_burst"),
            (|s| s.risk_half_life_s = 0, "risk_half_life_s"),
            (|s| s.max_identities = 0, "max_identities"),
        ];
        for (edit, field) in cases {
            let mut s = Settings::default();
            edit(&mut s);
            match s.validate() {
                Err(SettingsError::OutOfRange { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
