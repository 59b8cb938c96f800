use std::os::unix::fs::PermissionsExt;

use super::*;

/// `rauc status --detailed --output-format=json` of a factory-fresh QEMU image (RAUC 1.8),
/// captured from the guest.
const FACTORY: &str = include_str!("testdata/status-factory.json");

#[test]
fn factory_status_names_the_booted_slot_and_the_empty_one() {
    let s = parse_status(FACTORY).unwrap();
    assert_eq!(s.compatible, "palisade-x86_64");
    assert_eq!(s.booted.as_deref(), Some("A"));
    assert_eq!(s.boot_primary.as_deref(), Some("rootfs.0"));
    let names: Vec<_> = s.slots.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["rootfs.0", "rootfs.1"]);
    let a = s.booted_slot().unwrap();
    assert_eq!(
        (a.name.as_str(), a.bootname.as_deref(), a.state.as_str()),
        ("rootfs.0", Some("A"), "booted")
    );
    assert!(a.primary);
    assert_eq!(a.boot_status.as_deref(), Some("good"));
    assert_eq!(a.version, None, "nothing was installed by RAUC yet");
    let b = s.inactive_slot().unwrap();
    assert_eq!(b.bootname.as_deref(), Some("B"));
    assert_eq!(b.boot_status.as_deref(), Some("bad"));
    assert!(!b.booted && !b.primary);
    assert_eq!(b.device, "/dev/disk/by-partlabel/rootfs-b");
}

#[test]
fn installed_slot_carries_bundle_version_and_times() {
    let json = r#"{"compatible":"palisade-x86_64","variant":"","booted":"A","boot_primary":"rootfs.1",
      "slots":[{"rootfs.1":{"class":"rootfs","device":"/dev/disk/by-partlabel/rootfs-b","type":"raw",
        "bootname":"B","state":"inactive","parent":null,"mountpoint":null,"boot_status":"good",
        "slot_status":{"bundle":{"compatible":"palisade-x86_64","version":"1.2.0","description":"x",
          "build":"20261123T1","hash":"ab12"},"checksum":{"sha256":"ab12","size":123},
          "installed":{"timestamp":"2026-11-23T09:40:00Z","count":1},
          "activated":{"timestamp":"2026-11-23T09:40:01Z","count":1},"status":"ok"}}},
       {"rootfs.0":{"class":"rootfs","device":"/dev/disk/by-partlabel/rootfs-a","type":"raw",
        "bootname":"A","state":"booted","parent":null,"mountpoint":null,"boot_status":"good",
        "slot_status":{"bundle":{"compatible":null}}}}]}"#;
    let s = parse_status(json).unwrap();
    let b = &s.slots[1];
    assert_eq!(b.name, "rootfs.1");
    assert!(b.primary && !b.booted);
    assert_eq!(b.version.as_deref(), Some("1.2.0"));
    assert_eq!(b.build.as_deref(), Some("20261123T1"));
    assert_eq!(b.installed_at.as_deref(), Some("2026-11-23T09:40:00Z"));
    assert_eq!(b.activated_at.as_deref(), Some("2026-11-23T09:40:01Z"));
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["slots"][1]["version"], "1.2.0");
}

#[test]
fn unreadable_status_is_a_parse_error() {
    assert!(matches!(
        parse_status("not json"),
        Err(SystemError::Parse(_))
    ));
    assert!(matches!(
        parse_status(r#"{"compatible":"x"}"#),
        Err(SystemError::Parse(_))
    ));
}

#[test]
fn info_gives_version_even_after_progress_lines() {
    let out = "rauc-Message: 09:17:01.025: Reading bundle\n{\"compatible\":\"palisade-x86_64\",\"version\":\"2.0\",\"build\":\"b7\",\"images\":[]}\n";
    assert_eq!(
        parse_info(out).unwrap(),
        ("2.0".to_owned(), Some("b7".to_owned()))
    );
    assert!(parse_info("no json here").is_err());
}

#[test]
fn error_message_keeps_what_rauc_said_without_log_decoration() {
    let status = std::process::Command::new("false").status().unwrap();
    let stderr = "(rauc:427): rauc-WARNING **: 09:25:21.951: signature verification failed: Verify error: certificate verify failed\nrauc-Message: 09:25:22.000: Reading bundle\n";
    let m = rauc::error_message(stderr, "", status);
    assert_eq!(
        m,
        "signature verification failed: Verify error: certificate verify failed"
    );
    assert!(rauc::error_message("", "", status).contains("said nothing"));
}

/// `palisade system status` off the appliance: RAUC is installed but no service answers.
#[test]
fn no_rauc_service_says_the_command_is_for_the_appliance() {
    let d = tempfile::tempdir().unwrap();
    let fake = d.path().join("rauc");
    // What RAUC 1.8 prints on a machine without a system D-Bus.
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Error retrieving slot status via D-Bus: error creating proxy: Could not connect: No such file or directory' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    use_fake_rauc(&fake);
    let e = status().unwrap_err();
    assert!(matches!(e, SystemError::Unavailable(_)), "{e:?}");
    let m = e.to_string();
    assert!(
        m.starts_with(
            "this command works on the appliance (RAUC); on this machine there is no RAUC service"
        ),
        "{m}"
    );
    assert!(m.contains("Could not connect"), "{m}");
    // A system bus without RAUC on it.
    assert!(rauc::no_service(
        "Error retrieving slot status via D-Bus: GDBus.Error:org.freedesktop.DBus.Error.ServiceUnknown: The name de.pengutronix.rauc was not provided by any .service files",
        ""
    ));
    // A real failure of RAUC is not mistaken for a missing service.
    assert!(!rauc::no_service(
        "rauc-WARNING **: signature verification failed: bad",
        ""
    ));

    use_fake_rauc(&d.path().join("not-there"));
    let m = status().unwrap_err().to_string();
    assert!(
        m.starts_with(
            "this command works on the appliance (RAUC); on this machine there is no RAUC"
        ),
        "{m}"
    );
}

/// Runs the real functions against a stand-in `rauc` (a shell script that answers like
/// RAUC 1.8 and fails where RAUC fails): the command lines, the order of calls and the
/// error path are what is checked. The QEMU image tests run the real RAUC.
#[test]
fn install_checks_the_bundle_first_and_reports_the_new_primary() {
    let d = tempfile::tempdir().unwrap();
    let calls = d.path().join("calls");
    let fake = d.path().join("rauc");
    let factory = d.path().join("factory.json");
    std::fs::write(
        &factory,
        FACTORY.replace(
            "\"boot_primary\":\"rootfs.0\"",
            "\"boot_primary\":\"rootfs.1\"",
        ),
    )
    .unwrap();
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> {calls}\ncase \"$1\" in\n\
             info) case \"$3\" in *bad*) echo 'rauc-WARNING **: 09:00:00.000: signature verification failed: bad' >&2; exit 1;; esac\n\
                   echo '{{\"version\":\"2.0\",\"build\":\"b2\"}}';;\n\
             install) echo 'installing'; echo 'Installing done.';;\n\
             status) cat {factory};;\n\
             esac\n",
            calls = calls.display(),
            factory = factory.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let good = d.path().join("good.raucb");
    let bad = d.path().join("bad.raucb");
    std::fs::write(&good, b"x").unwrap();
    std::fs::write(&bad, b"x").unwrap();
    use_fake_rauc(&fake);

    let r = install_update(&good).unwrap();
    assert_eq!(r.version, "2.0");
    assert_eq!(r.slot.as_deref(), Some("rootfs.1"));
    assert_eq!(r.bootname.as_deref(), Some("B"));
    assert!(r.reboot_required);
    assert!(r.log.iter().any(|l| l == "Installing done."));

    let e = install_update(&bad).unwrap_err();
    match e {
        SystemError::Rauc { command, message } => {
            assert_eq!(command, "info");
            assert_eq!(message, "signature verification failed: bad");
        }
        other => panic!("{other:?}"),
    }
    let calls = std::fs::read_to_string(&calls).unwrap();
    let verbs: Vec<_> = calls
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(verbs, ["info", "install", "status", "info"], "{calls}");

    assert!(matches!(
        install_update(&d.path().join("missing.raucb")),
        Err(SystemError::Bundle { .. })
    ));
}

fn use_fake_rauc(fake: &std::path::Path) {
    RAUC_OVERRIDE.with(|o| *o.borrow_mut() = Some(fake.to_path_buf()));
}
