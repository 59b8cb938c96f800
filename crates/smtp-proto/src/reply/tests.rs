use super::*;

type Parsed = Result<Option<(Reply, usize)>, ReplyError>;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|l| (*l).to_owned()).collect()
}

#[test]
fn writing() {
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::new(250, "2.0.0", "Ok"), "250 2.0.0 Ok\r\n"),
        (
            Reply::new(220, "", "mx.example.com ESMTP"),
            "220 mx.example.com ESMTP\r\n",
        ),
        (
            Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"),
            "354 End data with <CR><LF>.<CR><LF>\r\n",
        ),
        (Reply::new(250, "2.0.0", ""), "250 2.0.0\r\n"),
        (Reply::new(250, "", ""), "250\r\n"),
        (Reply::multi(250, vec![]), "250\r\n"),
        (
            Reply::multi(
                250,
                s(&["mx.example.com", "PIPELINING", "SIZE 10240000", "8BITMIME"]),
            ),
            "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n",
        ),
        (
            Reply {
                code: 550,
                enhanced: Some((5, 7, 1)),
                lines: s(&["Rejected", "by policy"]),
            },
            "550-5.7.1 Rejected\r\n550 5.7.1 by policy\r\n",
        ),
        (
            Reply {
                code: 451,
                enhanced: Some((4, 3, 0)),
                lines: s(&["", "x"]),
            },
            "451-4.3.0\r\n451 4.3.0 x\r\n",
        ),
        // Text never breaks framing.
        (
            Reply::new(550, "5.0.0", "evil\r\n250 ok"),
            "550 5.0.0 evil  250 ok\r\n",
        ),
        (Reply::new(550, "", "a\nb\rc\0d\te"), "550 a b c d\te\r\n"),
        (
            Reply::new(554, "5.7.1", "Message rejected: contains \u{1b}[31m"),
            "554 5.7.1 Message rejected: contains  [31m\r\n",
        ),
    ];
    for (reply, want) in cases {
        assert_eq!(
            String::from_utf8(reply.to_bytes()).unwrap(),
            want,
            "{reply:?}"
        );
    }
}

#[test]
fn written_lines_are_cut_to_512_octets() {
    let r = Reply::new(550, "5.7.1", "x".repeat(2000));
    let wire = r.to_bytes();
    assert_eq!(wire.len(), 512);
    assert!(wire.starts_with(b"550 5.7.1 xxx") && wire.ends_with(b"x\r\n"));
    // Never in the middle of a character.
    let r = Reply::new(550, "", "é".repeat(400));
    let wire = r.to_bytes();
    assert!(wire.len() <= 512);
    assert!(String::from_utf8(wire).is_ok());
}

#[test]
fn codes_and_summaries() {
    let r = Reply::new(250, "2.1.5", "Recipient ok");
    assert!(r.is_positive() && !r.is_transient() && !r.is_permanent());
    assert_eq!(r.to_string(), "250 2.1.5 Recipient ok");
    let r = Reply::new(354, "", "Go ahead");
    assert!(r.is_positive());
    assert_eq!(r.to_string(), "354 Go ahead");
    let r = Reply {
        code: 421,
        enhanced: Some((4, 4, 2)),
        lines: s(&["Timeout", "closing"]),
    };
    assert!(r.is_transient() && !r.is_positive());
    assert_eq!(r.to_string(), "421 4.4.2 Timeout");
    assert_eq!(r.text(), "Timeout / closing");
    let r = Reply::new(554, "5.7.1", "No");
    assert!(r.is_permanent());
    assert_eq!(Reply::multi(250, vec![]).to_string(), "250");
    assert_eq!(Reply::new(250, "", "").to_string(), "250");
}

#[test]
fn parsing() {
    let ok = |code, enhanced, lines: &[&str], consumed| {
        Ok(Some((
            Reply {
                code,
                enhanced,
                lines: s(lines),
            },
            consumed,
        )))
    };
    let cases: Vec<(&[u8], Parsed)> = vec![
        (b"", Ok(None)),
        (b"2", Ok(None)),
        (b"250", Ok(None)),
        (b"250 Ok", Ok(None)),
        (b"250 Ok\r", Ok(None)),
        (b"250-a\r\n", Ok(None)),
        (b"250-a\r\n250", Ok(None)),
        (b"250 Ok\r\n", ok(250, None, &["Ok"], 8)),
        (b"250\r\n", ok(250, None, &[""], 5)),
        (b"250 \r\n", ok(250, None, &[""], 6)),
        (b"250 2.0.0 Ok\r\n", ok(250, Some((2, 0, 0)), &["Ok"], 14)),
        (b"250 2.0.0\r\n", ok(250, Some((2, 0, 0)), &[""], 11)),
        (
            b"550 5.7.1 Relay denied\r\nrest",
            ok(550, Some((5, 7, 1)), &["Relay denied"], 24),
        ),
        (b"451 4.7.651 x\r\n", ok(451, Some((4, 7, 651)), &["x"], 15)),
        // Class must match the code's; otherwise it is just text.
        (b"550 2.0.0 odd\r\n", ok(550, None, &["2.0.0 odd"], 15)),
        (b"250 2.0 Ok\r\n", ok(250, None, &["2.0 Ok"], 12)),
        (b"250 2.0.0.1 Ok\r\n", ok(250, None, &["2.0.0.1 Ok"], 16)),
        (b"250 2.1000.0 Ok\r\n", ok(250, None, &["2.1000.0 Ok"], 17)),
        (
            b"250-mx.example.com Hello\r\n250-PIPELINING\r\n250 SIZE 100\r\nQUIT",
            ok(
                250,
                None,
                &["mx.example.com Hello", "PIPELINING", "SIZE 100"],
                56,
            ),
        ),
        (
            b"550-5.1.1 No such user\r\n550 5.1.1 here\r\n",
            ok(550, Some((5, 1, 1)), &["No such user", "here"], 40),
        ),
        (b"250 caf\xe9\r\n", ok(250, None, &["caf\u{fffd}"], 10)),
        (b"250 a\tb\r\n", ok(250, None, &["a\tb"], 9)),
        (b"ABC", Err(ReplyError::BadCode)),
        (b"25x", Err(ReplyError::BadCode)),
        (b"150 old\r\n", Err(ReplyError::BadCode)),
        (b"650 x\r\n", Err(ReplyError::BadCode)),
        (b"25\r\n", Err(ReplyError::BadCode)),
        (b"\r\n", Err(ReplyError::BadCode)),
        (b"250_ok\r\n", Err(ReplyError::BadSeparator)),
        (b"2500\r\n", Err(ReplyError::BadSeparator)),
        (b"250-a\r\n251 b\r\n", Err(ReplyError::MixedCodes)),
        (b"250-a\r\n2", Ok(None)),
        (b"250-a\r\n3", Err(ReplyError::MixedCodes)),
        (b"250-a\r\n25x", Err(ReplyError::BadCode)),
        (b"250 ok\n", Err(ReplyError::BareLf)),
        (b"250-ok\r\n250 x\n", Err(ReplyError::BareLf)),
        (b"250 o\rk\r\n", Err(ReplyError::BareCr)),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_reply(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn parsing_limits() {
    // 4096 octets including CRLF is the longest line.
    let line = |len: usize| [b"250 ".to_vec(), vec![b'x'; len - 6], b"\r\n".to_vec()].concat();
    assert!(matches!(parse_reply(&line(4096)), Ok(Some((_, 4096)))));
    assert_eq!(parse_reply(&line(4097)), Err(ReplyError::LineTooLong));
    // Without waiting for the line end.
    let mut endless = b"250 ".to_vec();
    endless.resize(5000, b'x');
    assert_eq!(parse_reply(&endless), Err(ReplyError::LineTooLong));
    let many = |n: usize| {
        let mut v = b"250-x\r\n".repeat(n - 1);
        v.extend_from_slice(b"250 x\r\n");
        v
    };
    assert!(matches!(parse_reply(&many(MAX_REPLY_LINES)), Ok(Some(_))));
    assert_eq!(
        parse_reply(&many(MAX_REPLY_LINES + 1)),
        Err(ReplyError::TooManyLines)
    );
}

#[test]
fn written_replies_parse_back() {
    let replies = [
        Reply::new(250, "2.0.0", "Ok: queued as 1234"),
        Reply::new(220, "", "mx ESMTP"),
        Reply {
            code: 550,
            enhanced: Some((5, 7, 1)),
            lines: s(&["a", "b", "c"]),
        },
        Reply::multi(250, s(&["mx", "PIPELINING", "AUTH PLAIN LOGIN"])),
    ];
    for r in replies {
        let wire = r.to_bytes();
        assert_eq!(parse_reply(&wire), Ok(Some((r, wire.len()))));
        for end in 0..wire.len() {
            assert_eq!(parse_reply(&wire[..end]), Ok(None));
        }
    }
}

#[test]
fn capabilities() {
    let ehlo = |lines: &[&str]| Capabilities::from_ehlo(&Reply::multi(250, s(lines)));
    let caps = ehlo(&[
        "mx.example.com Hello client",
        "PIPELINING",
        "SIZE 35882577",
        "8bitmime",
        "SMTPUTF8",
        "STARTTLS",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "CHUNKING",
        "AUTH PLAIN login",
        "AUTH=LOGIN XOAUTH2",
        "X-UNKNOWN stuff",
        "",
    ]);
    assert_eq!(
        caps,
        Capabilities {
            pipelining: true,
            size: Some(35882577),
            eightbitmime: true,
            smtputf8: true,
            starttls: true,
            enhanced_status_codes: true,
            dsn: true,
            chunking: true,
            auth: s(&["PLAIN", "LOGIN", "XOAUTH2"]),
        }
    );
    // The greeting line is not a keyword.
    assert_eq!(ehlo(&["STARTTLS"]), Capabilities::default());
    assert_eq!(ehlo(&["mx", "SIZE"]).size, Some(0));
    assert_eq!(ehlo(&["mx", "SIZE 0"]).size, Some(0));
    assert_eq!(ehlo(&["mx", "SIZE lots"]).size, Some(0));
    assert_eq!(ehlo(&["mx"]).size, None);
    assert!(ehlo(&["mx", "AUTH"]).auth.is_empty());
    // Only a 250 offers anything.
    let refused = Reply {
        code: 550,
        enhanced: None,
        lines: s(&["no", "STARTTLS"]),
    };
    assert_eq!(Capabilities::from_ehlo(&refused), Capabilities::default());
    // Straight from the wire.
    let (reply, _) = parse_reply(b"250-mx\r\n250-STARTTLS\r\n250 SIZE 1000\r\n")
        .unwrap()
        .unwrap();
    let caps = Capabilities::from_ehlo(&reply);
    assert!(caps.starttls && caps.size == Some(1000) && !caps.pipelining);
}

/// Found by fuzzing: writing turns control characters into spaces, so text that only looked
/// like an enhanced code once sanitized becomes one. Written replies settle after two rounds.
#[test]
fn sanitized_text_settles() {
    let r = Reply {
        code: 451,
        enhanced: None,
        lines: s(&["4.3.01\u{1}x", &"y".repeat(510)]),
    };
    let wire = r.to_bytes();
    assert!(wire.starts_with(b"451-4.3.01 x\r\n451 yyy"));
    let (once, _) = parse_reply(&wire).unwrap().unwrap();
    assert_eq!(once.enhanced, Some((4, 3, 1)));
    assert_eq!(once.lines[0], "x");
    assert_eq!(once.lines[1].len(), 506);
    let (twice, _) = parse_reply(&once.to_bytes()).unwrap().unwrap();
    assert_eq!(twice.lines[1].len(), 500);
    let wire = twice.to_bytes();
    assert_eq!(parse_reply(&wire), Ok(Some((twice, wire.len()))));
}
