//! Properties of the parsers that face attackers: they never panic, and what they accept
//! they accept in one reading only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use remit_core::mcp::McpMessage;
use remit_core::{CanonicalPath, Config, RequestFacts};

/// Request targets built from the bytes that make paths interesting.
fn target() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2F".to_owned()),
        Just("%25".to_owned()),
        Just("%c3%a9".to_owned()),
        Just("%ff".to_owned()),
        Just("%".to_owned()),
        Just(";".to_owned()),
        Just("?".to_owned()),
        Just("#".to_owned()),
        Just("\\".to_owned()),
        "[a-z0-9~!$&'()*+,=:@-]{1,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever is accepted has one canonical form: parsing it again changes nothing, and
    /// the decoded form never contains a dot segment or an empty segment.
    #[test]
    fn canonical_paths_are_fixed_points(t in target()) {
        if let Ok(p) = CanonicalPath::parse(&t) {
            let again = CanonicalPath::parse(p.encoded()).expect("a canonical path parses");
            prop_assert_eq!(again.decoded(), p.decoded());
            prop_assert_eq!(again.encoded(), p.encoded());
            let inner = p.decoded().trim_end_matches('/');
            for seg in inner.split('/').skip(1) {
                prop_assert!(seg != "." && seg != ".." && !seg.is_empty(), "segment {:?} in {:?}", seg, p);
            }
            prop_assert!(!p.encoded().contains(';') && !p.encoded().contains('#'));
        }
    }

    #[test]
    fn request_parsing_never_panics(
        method in "[A-Za-z \\x00-\\x7f]{0,10}",
        t in target(),
        name in "[A-Za-z-]{1,20}",
        value in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = RequestFacts::parse(&method, &t, [(name.as_str(), value.as_slice())], None, None);
    }

    #[test]
    fn mcp_parsing_never_panics(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = McpMessage::parse(&body);
    }

    #[test]
    fn config_parsing_never_panics(text in "[\\[\\]a-z_=\"0-9 .\\n{}*/:,-]{0,300}") {
        let _ = Config::parse(&text, "fuzz.toml");
    }
}
