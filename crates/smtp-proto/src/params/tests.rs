use super::*;

#[test]
fn xtext() {
    let decode: &[(&str, Option<&str>)] = &[
        ("", Some("")),
        ("abc", Some("abc")),
        ("a+2Bb", Some("a+b")),
        ("a+3Db", Some("a=b")),
        ("a+20b", Some("a b")),
        ("a+2bb", Some("a+b")),
        ("<>", Some("<>")),
        ("a+", None),
        ("a+2", None),
        ("a+G0", None),
        ("a++20", None),
        ("a=b", None),
        ("a b", None),
        // Decoded controls and non-ASCII are refused: DSN header injection.
        ("a+0D+0AX-Injected:+20yes", None),
        ("+00", None),
        ("+7F", None),
        ("+C3+A9", None),
        ("é", None),
        ("+é1", None),
    ];
    for (input, want) in decode {
        assert_eq!(xtext_decode(input).as_deref(), *want, "{input:?}");
    }
    let encode: &[(&str, &str)] = &[
        ("abc", "abc"),
        ("a+b=c", "a+2Bb+3Dc"),
        ("a b", "a+20b"),
        ("\r\n", "+0D+0A"),
        ("é", "+C3+A9"),
        ("", ""),
    ];
    for (input, want) in encode {
        assert_eq!(xtext_encode(input), *want, "{input:?}");
    }
    for s in ["user@example.com", "a+b=c d", "~!<>"] {
        assert_eq!(xtext_decode(&xtext_encode(s)).as_deref(), Some(s));
    }
}

#[test]
fn notify() {
    let n = |never, success, failure, delay| Notify {
        never,
        success,
        failure,
        delay,
    };
    let cases: &[(&str, Option<Notify>)] = &[
        ("NEVER", Some(n(true, false, false, false))),
        ("never", Some(n(true, false, false, false))),
        ("SUCCESS", Some(n(false, true, false, false))),
        ("FAILURE,DELAY", Some(n(false, false, true, true))),
        ("delay,Success,FAILURE", Some(n(false, true, true, true))),
        ("NEVER,SUCCESS", None),
        ("SUCCESS,NEVER", None),
        ("SUCCESS,SUCCESS", None),
        ("SUCCESS,", None),
        ("", None),
        ("SOMETIMES", None),
    ];
    for (input, want) in cases {
        assert_eq!(Notify::parse(input), *want, "{input:?}");
    }
    assert_eq!(n(true, false, false, false).to_param(), "NEVER");
    assert_eq!(
        n(false, true, true, true).to_param(),
        "SUCCESS,FAILURE,DELAY"
    );
    assert_eq!(n(false, false, true, false).to_param(), "FAILURE");
    assert_eq!(Notify::default().to_param(), "NEVER");
}

#[test]
fn wire_forms() {
    let p = MailParams {
        size: Some(1024),
        body: Some(Body::EightBitMime),
        smtputf8: true,
        ret: Some(Ret::Hdrs),
        envid: Some("id+1 x".to_owned()),
        auth: Some("<>".to_owned()),
    };
    assert_eq!(
        p.to_wire(),
        "SIZE=1024 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+20x AUTH=<>"
    );
    assert_eq!(MailParams::default().to_wire(), "");
    let r = RcptParams {
        notify: Some(Notify {
            failure: true,
            delay: true,
            ..Notify::default()
        }),
        orcpt: Some("rfc822;a+b@example.com".to_owned()),
    };
    assert_eq!(
        r.to_wire(),
        "NOTIFY=FAILURE,DELAY ORCPT=rfc822;a+2Bb@example.com"
    );
    let bare = RcptParams {
        notify: None,
        orcpt: Some("u@x".to_owned()),
    };
    assert_eq!(bare.to_wire(), "ORCPT=rfc822;u@x");
}

#[test]
fn stored_forms_round_trip() {
    for body in [Body::SevenBit, Body::EightBitMime] {
        assert_eq!(body.as_param().parse::<Body>(), Ok(body));
    }
    assert_eq!("8bitmime".parse::<Body>(), Ok(Body::EightBitMime));
    let err = "BINARYMIME".parse::<Body>().unwrap_err();
    assert_eq!(err.param, "BODY");
    for ret in [Ret::Full, Ret::Hdrs] {
        assert_eq!(ret.as_param().parse::<Ret>(), Ok(ret));
    }
    assert!("ALL".parse::<Ret>().is_err());
    for s in ["NEVER", "SUCCESS", "FAILURE,DELAY", "SUCCESS,FAILURE,DELAY"] {
        let n: Notify = s.parse().unwrap();
        assert_eq!(n.to_param(), s);
    }
    assert!("NEVER,FAILURE".parse::<Notify>().is_err());
    assert!(Notify::wants_failure(None));
    assert!(Notify::wants_failure(Some(
        "SUCCESS,FAILURE".parse().unwrap()
    )));
    assert!(!Notify::wants_failure(Some("NEVER".parse().unwrap())));
    assert!(!Notify::wants_failure(Some("DELAY".parse().unwrap())));
}
