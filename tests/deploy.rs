//! What deploy/ ships for running kefu on several machines is accepted by the
//! tools that will run it: Kamailio's own configuration check, and systemd's
//! check of the unit (with this build's binary in place of the installed one).

mod common;

use std::process::Command;

#[test]
fn kamailio_accepts_the_load_balancer_configuration() {
    let repo = common::repo();
    let out = Command::new("kamailio")
        .arg("-c")
        .arg("-f")
        .arg(repo.join("deploy/kamailio/kamailio.cfg"))
        .arg("-A")
        .arg(format!(
            "DS_LIST=\"{}\"",
            repo.join("deploy/kamailio/dispatcher.list").display()
        ))
        .output()
        .expect("kamailio is installed by deploy/setup.sh");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kamailio -c:\n{said}");
    assert!(said.contains("config file ok"), "{said}");
    assert!(!said.contains("ERROR"), "{said}");
}

#[test]
fn systemd_accepts_the_unit() {
    let repo = common::repo();
    let unit = std::fs::read_to_string(repo.join("deploy/kefu.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/kefu serve"),
        "{unit}"
    );
    assert!(
        unit.contains("LimitNOFILE=") && unit.contains("LimitNICE="),
        "{unit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().join("kefu.service");
    std::fs::write(
        &here,
        unit.replace("/usr/local/bin/kefu", env!("CARGO_BIN_EXE_kefu")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&here)
        .output()
        .expect("systemd-analyze is installed by deploy/setup.sh");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}
