use super::*;
use AddressError::*;

fn mb(local: &str, domain: &str) -> Mailbox {
    Mailbox {
        local: local.to_owned(),
        domain: domain.to_owned(),
    }
}

#[test]
fn paths() {
    let ok: &[(&str, bool, &str, &str)] = &[
        ("<user@example.com>", false, "user", "example.com"),
        ("<User.Name@EXAMPLE.Com>", false, "User.Name", "example.com"),
        ("<a@b>", false, "a", "b"),
        (
            "<localhost-user@localhost>",
            false,
            "localhost-user",
            "localhost",
        ),
        (
            "<first.last+tag@sub-domain.example.org>",
            false,
            "first.last+tag",
            "sub-domain.example.org",
        ),
        (
            "<!#$%&'*+-/=?^_`{|}~@example.com>",
            false,
            "!#$%&'*+-/=?^_`{|}~",
            "example.com",
        ),
        (
            "<\"quoted\"@example.com>",
            false,
            "\"quoted\"",
            "example.com",
        ),
        (
            "<\"with space\"@example.com>",
            false,
            "\"with space\"",
            "example.com",
        ),
        ("<\"a@b\"@example.com>", false, "\"a@b\"", "example.com"),
        ("<\"a>b\"@example.com>", false, "\"a>b\"", "example.com"),
        (
            "<\"esc\\\"aped\\\\\"@example.com>",
            false,
            "\"esc\\\"aped\\\\\"",
            "example.com",
        ),
        ("<\"\"@example.com>", false, "\"\"", "example.com"),
        ("<\"a..b\"@example.com>", false, "\"a..b\"", "example.com"),
        ("<u@[192.0.2.1]>", false, "u", "[192.0.2.1]"),
        ("<u@[IPv6:2001:db8::1]>", false, "u", "[IPv6:2001:db8::1]"),
        ("<u@[ipv6:2001:DB8::1]>", false, "u", "[ipv6:2001:DB8::1]"),
        (
            "<u@[IPv6:::ffff:192.0.2.1]>",
            false,
            "u",
            "[IPv6:::ffff:192.0.2.1]",
        ),
        (
            "<u@xn--bcher-kva.example>",
            false,
            "u",
            "xn--bcher-kva.example",
        ),
        ("<u@1.2.3.4>", false, "u", "1.2.3.4"),
        ("<u@a-b.c>", false, "u", "a-b.c"),
        ("<jöran@bücher.example>", true, "jöran", "bücher.example"),
        ("<用户@例子.广告>", true, "用户", "例子.广告"),
        (
            "<\"jö ran\"@example.com>",
            true,
            "\"jö ran\"",
            "example.com",
        ),
        ("<u@BÜCHER.example>", true, "u", "bÜcher.example"),
    ];
    for (input, utf8, local, domain) in ok {
        assert_eq!(parse_path(input, *utf8), Ok(mb(local, domain)), "{input}");
    }
    let bad: &[(&str, bool, AddressError)] = &[
        ("user@example.com", false, NotBracketed),
        ("<user@example.com", false, NotBracketed),
        ("user@example.com>", false, NotBracketed),
        ("", false, NotBracketed),
        ("<>", false, Empty),
        ("<@a,@b:user@c>", false, SourceRoute),
        ("<@a:user@c>", false, SourceRoute),
        ("<user>", false, MissingDomain),
        ("<user@>", false, MissingDomain),
        ("<@>", false, SourceRoute),
        ("<.user@example.com>", false, BadLocal),
        ("<user.@example.com>", false, BadLocal),
        ("<us..er@example.com>", false, BadLocal),
        ("<us er@example.com>", false, BadLocal),
        ("<us(er@example.com>", false, BadLocal),
        ("<us\"er@example.com>", false, BadLocal),
        ("<\"unterminated@example.com>", false, BadLocal),
        ("<\"a\"b@example.com>", false, BadLocal),
        ("<\"a\\", false, NotBracketed),
        ("<\"a\\\"@example.com>", false, BadLocal),
        ("<a@b@example.com>", false, BadDomain),
        ("<u@-example.com>", false, BadDomain),
        ("<u@example-.com>", false, BadDomain),
        ("<u@example..com>", false, BadDomain),
        ("<u@.example.com>", false, BadDomain),
        ("<u@example.com.>", false, BadDomain),
        ("<u@exa_mple.com>", false, BadDomain),
        ("<u@exa mple.com>", false, BadDomain),
        ("<u@[192.0.2.256]>", false, BadLiteral),
        ("<u@[192.0.2]>", false, BadLiteral),
        ("<u@[192.000.2.1]>", false, BadLiteral),
        ("<u@[IPv6:2001:db8::g]>", false, BadLiteral),
        ("<u@[IPv6:192.0.2.1]>", false, BadLiteral),
        ("<u@[IPv6:fe80::1%eth0]>", false, BadLiteral),
        ("<u@[2001:db8::1]>", false, BadLiteral),
        ("<u@[x-tag:stuff]>", false, BadLiteral),
        ("<u@[192.0.2.1>", false, BadLiteral),
        ("<u@[]>", false, BadLiteral),
        ("<jöran@example.com>", false, Utf8NotAllowed),
        ("<u@bücher.example>", false, Utf8NotAllowed),
        ("<\"jö\"@example.com>", false, Utf8NotAllowed),
        ("<u@bü cher.example>", true, BadDomain),
        ("<u@b\u{202e}moc.example>", true, BadDomain),
        ("<a\u{200b}b@example.com>", true, BadLocal),
        ("<a\u{3000}b@example.com>", true, BadLocal),
        ("<\"a\u{2028}b\"@example.com>", true, BadLocal),
        ("<u@\u{00e9}-.example>", true, BadDomain),
        ("<user\0@example.com>", false, ControlChar),
        ("<user@exam\rple.com>", false, ControlChar),
        ("<user@example.com\n>", false, ControlChar),
        ("<\"a\tb\"@example.com>", false, ControlChar),
        ("<us\u{7f}er@example.com>", false, ControlChar),
        ("<us\u{85}er@example.com>", true, ControlChar),
        // Control characters outrank the non-ASCII finding.
        ("<jö\0@example.com>", false, ControlChar),
    ];
    for (input, utf8, err) in bad {
        assert_eq!(parse_path(input, *utf8).as_ref(), Err(err), "{input:?}");
    }
}

#[test]
fn length_limits_exact_boundaries() {
    let path = |local: usize, domain_labels: &[usize]| {
        let domain: Vec<String> = domain_labels.iter().map(|&n| "d".repeat(n)).collect();
        format!("<{}@{}>", "l".repeat(local), domain.join("."))
    };
    // Local part: 64 octets.
    assert!(parse_path(&path(64, &[3]), false).is_ok());
    assert_eq!(parse_path(&path(65, &[3]), false), Err(LocalTooLong));
    // Quotes count: 62 characters quoted are 64 octets.
    assert!(parse_path(&format!("<\"{}\"@x>", "q".repeat(62)), false).is_ok());
    assert_eq!(
        parse_path(&format!("<\"{}\"@x>", "q".repeat(63)), false),
        Err(LocalTooLong)
    );
    // Label: 63 octets.
    assert!(parse_path(&path(1, &[63]), false).is_ok());
    assert_eq!(parse_path(&path(1, &[64]), false), Err(BadDomain));
    // Path: 256 octets including the brackets. 64 + 1 + 189 + 2 = 256.
    let at_limit = path(64, &[63, 63, 61]);
    assert_eq!(at_limit.len(), 256);
    assert!(parse_path(&at_limit, false).is_ok());
    let over = path(64, &[63, 63, 62]);
    assert_eq!(over.len(), 257);
    assert_eq!(parse_path(&over, false), Err(PathTooLong));
    // Domain: 255 octets (reachable without brackets only, the path limit is tighter).
    let domain = |labels: &[usize]| {
        labels
            .iter()
            .map(|&n| "d".repeat(n))
            .collect::<Vec<_>>()
            .join(".")
    };
    let d255 = domain(&[63, 63, 63, 63]);
    assert_eq!(d255.len(), 255);
    assert!(parse_mailbox(&format!("u@{d255}"), false).is_ok());
    let d256 = domain(&[63, 63, 63, 62, 1]);
    assert_eq!(d256.len(), 256);
    assert_eq!(
        parse_mailbox(&format!("u@{d256}"), false),
        Err(DomainTooLong)
    );
    assert_eq!(
        parse_path(&format!("<u@{d256}>"), false),
        Err(DomainTooLong)
    );
    // UTF-8 counts octets: 32 two-octet characters are 64 octets, 33 are too many.
    assert!(parse_path(&format!("<{}@x>", "é".repeat(32)), true).is_ok());
    assert_eq!(
        parse_path(&format!("<{}@x>", "é".repeat(33)), true),
        Err(LocalTooLong)
    );
}

#[test]
fn reverse_and_forward_paths() {
    assert_eq!(ReversePath::parse("<>", false), Ok(ReversePath::Null));
    assert_eq!(
        ReversePath::parse("<a@b>", false),
        Ok(ReversePath::Mailbox(mb("a", "b")))
    );
    assert_eq!(ReversePath::parse("<@x:a@b>", false), Err(SourceRoute));
    assert_eq!(
        ForwardPath::parse("<Postmaster>", false),
        Ok(ForwardPath::Postmaster)
    );
    assert_eq!(
        ForwardPath::parse("<postMASTER>", false),
        Ok(ForwardPath::Postmaster)
    );
    assert_eq!(
        ForwardPath::parse("<postmaster@example.com>", false),
        Ok(ForwardPath::Mailbox(mb("postmaster", "example.com")))
    );
    assert_eq!(ForwardPath::parse("<>", false), Err(Empty));
    assert_eq!(
        ForwardPath::parse("<postmasters>", false),
        Err(MissingDomain)
    );
    assert_eq!(ReversePath::Null.to_string(), "<>");
    assert_eq!(ForwardPath::Postmaster.to_string(), "<Postmaster>");
    assert_eq!(
        ForwardPath::Mailbox(mb("\"a b\"", "x.org")).to_string(),
        "<\"a b\"@x.org>"
    );
}

#[test]
fn mailbox_properties() {
    let cases: &[(&str, bool, bool)] = &[
        // (path, relay hack, ascii)
        ("<user@example.com>", false, true),
        ("<user%other.com@example.com>", true, true),
        ("<other.com!user@example.com>", true, true),
        ("<\"user@other.com\"@example.com>", true, true),
        ("<jöran@example.com>", false, false),
        ("<u@bücher.example>", false, false),
    ];
    for (input, relay, ascii) in cases {
        let m = parse_path(input, true).unwrap();
        assert_eq!(m.has_relay_hack(), *relay, "{input}");
        assert_eq!(m.is_ascii(), *ascii, "{input}");
        // Display round-trips.
        assert_eq!(format!("<{m}>").to_lowercase(), input.to_lowercase());
        assert_eq!(parse_path(&format!("<{m}>"), true), Ok(m));
    }
    assert!(
        parse_mailbox("u@[192.0.2.1]", false)
            .unwrap()
            .is_address_literal()
    );
    assert_eq!(Mailbox::parse("a@B.c", false), Ok(mb("a", "b.c")));
}

#[test]
fn path_end_respects_quotes() {
    assert_eq!(path_end("<a@b> SIZE=1"), Some(5));
    assert_eq!(path_end("<\"a>b\"@c> x"), Some(9));
    assert_eq!(path_end("<\"a\\\">b\"@c>"), Some(11));
    assert_eq!(path_end("<a@b"), None);
    assert_eq!(path_end("a@b>"), None);
    assert_eq!(path_end("<\"a>"), None);
}
