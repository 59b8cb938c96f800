use super::*;
use crate::{Body, Mailbox, Notify, Ret};
use AddressError as A;
use CommandError::*;

fn mb(local: &str, domain: &str) -> Mailbox {
    Mailbox {
        local: local.to_owned(),
        domain: domain.to_owned(),
    }
}

fn mail(local: &str, domain: &str, params: MailParams) -> Command {
    Command::Mail {
        from: ReversePath::Mailbox(mb(local, domain)),
        params,
    }
}

fn rcpt(local: &str, domain: &str, params: RcptParams) -> Command {
    Command::Rcpt {
        to: ForwardPath::Mailbox(mb(local, domain)),
        params,
    }
}

#[test]
fn good_commands() {
    let ehlo = |s: &str| Command::Ehlo(s.to_owned());
    let cases: Vec<(&str, bool, Command)> = vec![
        ("EHLO mail.example.com", false, ehlo("mail.example.com")),
        ("ehlo mail.example.com", false, ehlo("mail.example.com")),
        ("EhLo [192.0.2.1]", false, ehlo("[192.0.2.1]")),
        ("EHLO under_score.sloppy", false, ehlo("under_score.sloppy")),
        ("EHLO x  ", false, ehlo("x")),
        ("EHLO\tx", false, ehlo("x")),
        ("HELO x.y", false, Command::Helo("x.y".to_owned())),
        ("DATA", false, Command::Data),
        ("data", false, Command::Data),
        ("DATA ", false, Command::Data),
        ("RSET", false, Command::Rset),
        ("NOOP", false, Command::Noop),
        ("NOOP anything at all", false, Command::Noop),
        ("QUIT", false, Command::Quit),
        ("STARTTLS", false, Command::StartTls),
        ("starttls", false, Command::StartTls),
        ("HELP", false, Command::Help),
        ("HELP MAIL", false, Command::Help),
        (
            "VRFY postmaster",
            false,
            Command::Vrfy("postmaster".to_owned()),
        ),
        (
            "VRFY John Smith",
            false,
            Command::Vrfy("John Smith".to_owned()),
        ),
        ("EXPN staff", false, Command::Expn("staff".to_owned())),
        ("BDAT 100 LAST", false, Command::Bdat),
        (
            "AUTH PLAIN",
            false,
            Command::Auth {
                mechanism: "PLAIN".to_owned(),
                initial: None,
            },
        ),
        (
            "auth plain AGZvbwBiYXI=",
            false,
            Command::Auth {
                mechanism: "PLAIN".to_owned(),
                initial: Some("AGZvbwBiYXI=".to_owned()),
            },
        ),
        (
            "AUTH LOGIN =",
            false,
            Command::Auth {
                mechanism: "LOGIN".to_owned(),
                initial: Some("=".to_owned()),
            },
        ),
        (
            "AUTH SCRAM-SHA-256",
            false,
            Command::Auth {
                mechanism: "SCRAM-SHA-256".to_owned(),
                initial: None,
            },
        ),
        (
            "MAIL FROM:<a@b.c>",
            false,
            mail("a", "b.c", MailParams::default()),
        ),
        (
            "mail from:<a@B.C>",
            false,
            mail("a", "b.c", MailParams::default()),
        ),
        (
            "MAIL FROM: <a@b.c>",
            false,
            mail("a", "b.c", MailParams::default()),
        ),
        (
            "MAIL FROM:<>",
            false,
            Command::Mail {
                from: ReversePath::Null,
                params: MailParams::default(),
            },
        ),
        (
            "MAIL FROM:<a@b.c>  ",
            false,
            mail("a", "b.c", MailParams::default()),
        ),
        (
            "MAIL FROM:<a@b.c> SIZE=1000",
            false,
            mail(
                "a",
                "b.c",
                MailParams {
                    size: Some(1000),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.c> size=0 body=8bitmime",
            false,
            mail(
                "a",
                "b.c",
                MailParams {
                    size: Some(0),
                    body: Some(Body::EightBitMime),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.c> BODY=7BIT",
            false,
            mail(
                "a",
                "b.c",
                MailParams {
                    body: Some(Body::SevenBit),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.c> SIZE=18446744073709551615",
            false,
            mail(
                "a",
                "b.c",
                MailParams {
                    size: Some(u64::MAX),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.c> RET=HDRS ENVID=QQ314159+2Bx",
            false,
            mail(
                "a",
                "b.c",
                MailParams {
                    ret: Some(Ret::Hdrs),
                    envid: Some("QQ314159+x".to_owned()),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.c> RET=full",
            false,
            mail(
                "a",
                "b.c",
                MailParams {
                    ret: Some(Ret::Full),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.c> AUTH=<>",
            false,
            mail(
                "a",
                "b.c",
                MailParams {
                    auth: Some("<>".to_owned()),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.c> AUTH=e+2Bf@b.c",
            false,
            mail(
                "a",
                "b.c",
                MailParams {
                    auth: Some("e+f@b.c".to_owned()),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<jö@bü.example> SMTPUTF8",
            false,
            mail(
                "jö",
                "bü.example",
                MailParams {
                    smtputf8: true,
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<jö@bü.example> BODY=8BITMIME smtputf8",
            false,
            mail(
                "jö",
                "bü.example",
                MailParams {
                    smtputf8: true,
                    body: Some(Body::EightBitMime),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.c>\tSIZE=5",
            false,
            mail(
                "a",
                "b.c",
                MailParams {
                    size: Some(5),
                    ..MailParams::default()
                },
            ),
        ),
        (
            "MAIL FROM:<\"x y\"@b.c>",
            false,
            mail("\"x y\"", "b.c", MailParams::default()),
        ),
        (
            "RCPT TO:<a@b.c>",
            false,
            rcpt("a", "b.c", RcptParams::default()),
        ),
        (
            "rcpt to:<a@b.c>",
            false,
            rcpt("a", "b.c", RcptParams::default()),
        ),
        (
            "RCPT TO: <a@b.c>",
            false,
            rcpt("a", "b.c", RcptParams::default()),
        ),
        (
            "RCPT TO:<Postmaster>",
            false,
            Command::Rcpt {
                to: ForwardPath::Postmaster,
                params: RcptParams::default(),
            },
        ),
        (
            "RCPT TO:<POSTMASTER>",
            false,
            Command::Rcpt {
                to: ForwardPath::Postmaster,
                params: RcptParams::default(),
            },
        ),
        (
            "RCPT TO:<jö@bü.example>",
            true,
            rcpt("jö", "bü.example", RcptParams::default()),
        ),
        (
            "RCPT TO:<a@b.c> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bx@b.c",
            false,
            rcpt(
                "a",
                "b.c",
                RcptParams {
                    notify: Some(Notify {
                        success: true,
                        failure: true,
                        ..Notify::default()
                    }),
                    orcpt: Some("rfc822;a+x@b.c".to_owned()),
                },
            ),
        ),
        (
            "RCPT TO:<a@b.c> notify=never",
            false,
            rcpt(
                "a",
                "b.c",
                RcptParams {
                    notify: Some(Notify {
                        never: true,
                        ..Notify::default()
                    }),
                    orcpt: None,
                },
            ),
        ),
        (
            "RCPT TO:<a@[192.0.2.1]>",
            false,
            rcpt("a", "[192.0.2.1]", RcptParams::default()),
        ),
    ];
    for (line, utf8, want) in cases {
        let got = Command::parse(line.as_bytes(), utf8);
        assert_eq!(got.as_ref(), Ok(&want), "{line:?}");
        // What a client writes, a server reads back the same.
        let wire = want.to_bytes();
        assert!(wire.ends_with(b"\r\n"));
        assert_eq!(
            Command::parse(&wire[..wire.len() - 2], utf8),
            Ok(want),
            "{line:?}"
        );
    }
}

#[test]
fn bad_commands() {
    let cases: &[(&[u8], bool, CommandError)] = &[
        (b"", false, Unrecognized),
        (b"   ", false, Unrecognized),
        (b"FOO", false, Unrecognized),
        (b"MAILFROM:<a@b>", false, Unrecognized),
        (b"EHLOx", false, Unrecognized),
        (b" EHLO x", false, Unrecognized),
        (b"GET / HTTP/1.1", false, Unrecognized),
        (
            b"EHLO",
            false,
            Syntax("a domain or address literal is required"),
        ),
        (
            b"EHLO ",
            false,
            Syntax("a domain or address literal is required"),
        ),
        (
            b"HELO",
            false,
            Syntax("a domain or address literal is required"),
        ),
        (
            b"EHLO a b",
            false,
            Syntax("one domain or address literal expected"),
        ),
        (
            b"EHLO b\xc3\xbccher.example",
            false,
            Syntax("non-ASCII characters in command"),
        ),
        (b"EHLO a\0b", false, Syntax("control character in command")),
        (b"EHLO a\rb", false, Syntax("control character in command")),
        (b"EHLO a\nb", false, Syntax("control character in command")),
        (
            b"NOOP \x1b[31m",
            false,
            Syntax("control character in command"),
        ),
        (b"NOOP \x7f", false, Syntax("control character in command")),
        (b"NOOP \xff", false, Syntax("invalid UTF-8")),
        (
            b"\xc3\xa9HLO x",
            false,
            Syntax("non-ASCII characters in command"),
        ),
        (b"DATA x", false, Syntax("unexpected argument")),
        (b"QUIT now", false, Syntax("unexpected argument")),
        (b"RSET x", false, Syntax("unexpected argument")),
        (b"STARTTLS x", false, Syntax("unexpected argument")),
        (b"VRFY", false, Syntax("VRFY needs an argument")),
        (b"EXPN  ", false, Syntax("EXPN needs an argument")),
        (b"AUTH", false, Syntax("AUTH needs a mechanism")),
        (
            b"AUTH PLAIN a b",
            false,
            Syntax("too many arguments to AUTH"),
        ),
        (b"AUTH PL@IN", false, Syntax("bad SASL mechanism name")),
        (
            b"AUTH ABCDEFGHIJKLMNOPQRSTU",
            false,
            Syntax("bad SASL mechanism name"),
        ),
        (
            b"AUTH PLAIN a!b",
            false,
            Syntax("initial response is not base64"),
        ),
        (b"MAIL", false, Syntax("MAIL FROM:<address> expected")),
        (
            b"MAIL TO:<a@b>",
            false,
            Syntax("MAIL FROM:<address> expected"),
        ),
        (
            b"MAIL FROM <a@b>",
            false,
            Syntax("MAIL FROM:<address> expected"),
        ),
        (
            b"MAIL  FROM:<a@b>",
            false,
            Syntax("MAIL FROM:<address> expected"),
        ),
        (
            b"RCPT FROM:<a@b>",
            false,
            Syntax("RCPT TO:<address> expected"),
        ),
        (b"MAIL FROM:", false, Syntax("missing address")),
        (b"MAIL FROM: ", false, Syntax("missing address")),
        (
            b"MAIL FROM:  <a@b>",
            false,
            Syntax("unexpected blanks before address"),
        ),
        (
            b"MAIL FROM: \t<a@b>",
            false,
            Syntax("unexpected blanks before address"),
        ),
        (
            b"MAIL FROM:<a@b>SIZE=1",
            false,
            Syntax("garbage after address"),
        ),
        (b"MAIL FROM:<a@b> =1", false, Syntax("malformed parameter")),
        (
            b"MAIL FROM:<a@b> -X=1",
            false,
            Syntax("malformed parameter"),
        ),
        (
            b"MAIL FROM:<a@b> SIZE=\xc3\xa9",
            true,
            Syntax("non-ASCII characters in parameters"),
        ),
        (
            b"MAIL FROM:<a@b>\0",
            false,
            Syntax("control character in command"),
        ),
        (b"MAIL FROM:a@b", false, BadAddress(A::NotBracketed)),
        (b"MAIL FROM:<a@b", false, BadAddress(A::NotBracketed)),
        (b"MAIL FROM:<@x,@y:a@b>", false, BadAddress(A::SourceRoute)),
        (b"MAIL FROM:<a..b@c>", false, BadAddress(A::BadLocal)),
        (b"MAIL FROM:<a@-c>", false, BadAddress(A::BadDomain)),
        (
            b"MAIL FROM:<j\xc3\xb6@b.c>",
            false,
            BadAddress(A::Utf8NotAllowed),
        ),
        // The session's flag does not count for MAIL: only the parameter on the same line.
        (
            b"MAIL FROM:<j\xc3\xb6@b.c>",
            true,
            BadAddress(A::Utf8NotAllowed),
        ),
        (
            b"MAIL FROM:<j\xc3\xb6@b.c> BODY=8BITMIME",
            true,
            BadAddress(A::Utf8NotAllowed),
        ),
        (
            b"RCPT TO:<j\xc3\xb6@b.c>",
            false,
            BadAddress(A::Utf8NotAllowed),
        ),
        (b"RCPT TO:<>", false, BadAddress(A::Empty)),
        (b"RCPT TO:<a>", false, BadAddress(A::MissingDomain)),
        (b"RCPT TO:<@x:a@b>", false, BadAddress(A::SourceRoute)),
        (b"RCPT TO:a@b", false, BadAddress(A::NotBracketed)),
        (
            b"MAIL FROM:<a@b> FOO=bar",
            false,
            UnknownParam("FOO".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> xyz",
            false,
            UnknownParam("XYZ".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> NOTIFY=NEVER",
            false,
            UnknownParam("NOTIFY".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> SIZE=1",
            false,
            UnknownParam("SIZE".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> RET=FULL",
            false,
            UnknownParam("RET".to_owned()),
        ),
        (b"MAIL FROM:<a@b> SIZE", false, BadParam("SIZE".to_owned())),
        (b"MAIL FROM:<a@b> SIZE=", false, BadParam("SIZE".to_owned())),
        (
            b"MAIL FROM:<a@b> SIZE=-1",
            false,
            BadParam("SIZE".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> SIZE=1k",
            false,
            BadParam("SIZE".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> SIZE=18446744073709551616",
            false,
            BadParam("SIZE".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> SIZE=000000000000000000001",
            false,
            BadParam("SIZE".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> SIZE=1 size=2",
            false,
            BadParam("SIZE".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> BODY=BINARYMIME",
            false,
            BadParam("BODY".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> BODY=8BIT",
            false,
            BadParam("BODY".to_owned()),
        ),
        (b"MAIL FROM:<a@b> BODY", false, BadParam("BODY".to_owned())),
        (
            b"MAIL FROM:<a@b> SMTPUTF8=yes",
            false,
            BadParam("SMTPUTF8".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8",
            false,
            BadParam("SMTPUTF8".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> RET=ALL",
            false,
            BadParam("RET".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> ENVID=a+0D+0Ab",
            false,
            BadParam("ENVID".to_owned()),
        ),
        (
            b"MAIL FROM:<a@b> ENVID=a+",
            false,
            BadParam("ENVID".to_owned()),
        ),
        (b"MAIL FROM:<a@b> AUTH", false, BadParam("AUTH".to_owned())),
        (
            b"MAIL FROM:<a@b> SIZE=1=2",
            false,
            BadParam("SIZE".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> NOTIFY=NEVER,DELAY",
            false,
            BadParam("NOTIFY".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> NOTIFY=",
            false,
            BadParam("NOTIFY".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> NOTIFY",
            false,
            BadParam("NOTIFY".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> NOTIFY=DELAY NOTIFY=DELAY",
            false,
            BadParam("NOTIFY".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> ORCPT=a@b",
            false,
            BadParam("ORCPT".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> ORCPT=;a@b",
            false,
            BadParam("ORCPT".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> ORCPT=rfc822;",
            false,
            BadParam("ORCPT".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> ORCPT=rfc822;a+0Ab",
            false,
            BadParam("ORCPT".to_owned()),
        ),
        (
            b"RCPT TO:<a@b> ORCPT=rfc 822;a",
            false,
            BadParam("ORCPT".to_owned()),
        ),
    ];
    for (line, utf8, want) in cases {
        assert_eq!(
            Command::parse(line, *utf8).as_ref(),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn parameter_length_limits() {
    let envid = |n: usize| format!("MAIL FROM:<a@b> ENVID={}", "e".repeat(n));
    assert!(Command::parse(envid(100).as_bytes(), false).is_ok());
    assert_eq!(
        Command::parse(envid(101).as_bytes(), false),
        Err(BadParam("ENVID".to_owned()))
    );
    let orcpt = |n: usize| format!("RCPT TO:<a@b> ORCPT=rfc822;{}", "o".repeat(n - 7));
    assert!(Command::parse(orcpt(500).as_bytes(), false).is_ok());
    assert_eq!(
        Command::parse(orcpt(501).as_bytes(), false),
        Err(BadParam("ORCPT".to_owned()))
    );
}

#[test]
fn error_replies() {
    let cases: &[(CommandError, bool, &str)] = &[
        (Unrecognized, true, "500 5.5.1 Command unrecognized\r\n"),
        (
            Syntax("unexpected argument"),
            false,
            "501 5.5.4 Syntax error: unexpected argument\r\n",
        ),
        (
            BadAddress(A::BadLocal),
            true,
            "501 5.1.7 Bad sender address syntax: invalid local part\r\n",
        ),
        (
            BadAddress(A::BadDomain),
            false,
            "501 5.1.3 Bad recipient address syntax: invalid domain\r\n",
        ),
        (
            BadAddress(A::SourceRoute),
            false,
            "553 5.1.3 Source routes are not accepted\r\n",
        ),
        (
            BadAddress(A::SourceRoute),
            true,
            "553 5.1.7 Source routes are not accepted\r\n",
        ),
        (
            BadAddress(A::Utf8NotAllowed),
            true,
            "553 5.6.7 Non-ASCII sender address requires SMTPUTF8\r\n",
        ),
        (
            UnknownParam("FOO".to_owned()),
            true,
            "555 5.5.4 Unsupported parameter FOO\r\n",
        ),
        (
            BadParam("SIZE".to_owned()),
            true,
            "501 5.5.4 Bad value for parameter SIZE\r\n",
        ),
    ];
    for (err, is_mail, want) in cases {
        assert_eq!(
            String::from_utf8(err.reply(*is_mail).to_bytes()).unwrap(),
            *want,
            "{err:?}"
        );
    }
}

#[test]
fn client_lines_cannot_break_framing() {
    let evil = Command::Mail {
        from: ReversePath::Mailbox(mb("a\r\nRCPT TO:<x@y>", "b")),
        params: MailParams {
            envid: Some("x\r\ny".to_owned()),
            ..MailParams::default()
        },
    };
    let wire = evil.to_bytes();
    assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(wire, b"MAIL FROM:<a  RCPT TO:<x@y>@b> ENVID=x+0D+0Ay\r\n");
    assert_eq!(Command::Ehlo("a\nb".to_owned()).to_bytes(), b"EHLO a b\r\n");
}

#[test]
fn never_panics_on_prefixes_of_good_lines() {
    let lines: &[&[u8]] = &[
        b"MAIL FROM:<\"a\\\"b\"@[IPv6:2001:db8::1]> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=a+2B AUTH=<>",
        "RCPT TO:<jö@bü.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;j+C3+B6@b".as_bytes(),
        b"AUTH PLAIN AGZvbwBiYXI=",
    ];
    for line in lines {
        for end in 0..=line.len() {
            for utf8 in [false, true] {
                let _ = Command::parse(&line[..end], utf8);
            }
        }
    }
}
