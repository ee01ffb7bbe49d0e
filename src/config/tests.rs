//! kefu.toml's parsing, with positions in errors.

use super::*;

#[test]
fn file_overrides_defaults_and_reports_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kefu.toml");
    std::fs::write(
        &path,
        "sip = \"127.0.0.1:5070\"\nrtp_ports = \"30000-30100\"\ndtmf = \"info\"\nasr_model = \"tiny.en-q8_0\"\nasr_workers = 2\n\n[[trunk]]\nname = \"carrier\"\naddresses = [\"10.0.0.1\"]\ndtmf = \"rfc4733\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&path)).unwrap();
    assert_eq!(c.sip.port(), 5070);
    assert_eq!(c.http.port(), 8080);
    assert_eq!(c.rtp_ports, (30000, 30100));
    assert_eq!((c.asr_model.as_str(), c.asr_workers), ("tiny.en-q8_0", 2));
    assert_eq!(
        c.dtmf_for("10.0.0.1".parse().unwrap()),
        (DtmfMode::Rfc4733, Some("carrier"))
    );
    assert_eq!(c.dtmf_for("10.0.0.2".parse().unwrap()).0, DtmfMode::Info);

    std::fs::write(&path, "sip = \"127.0.0.1:5070\"\nmax_cals = 5\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("kefu.toml:2:1"), "{err}");
    assert!(Config::load(Some(&dir.path().join("missing.toml"))).is_err());
}

#[test]
fn voices_by_language() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kefu.toml");
    std::fs::write(&path, "[voices]\nzh = \"kokoro-zh:jm_kumo\"\n").unwrap();
    let c = Config::load(Some(&path)).unwrap();
    assert_eq!(c.voices["zh"], "kokoro-zh:jm_kumo");
    std::fs::write(&path, "[voices]\nfr = \"espeak-en\"\n").unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("unknown language \"fr\""), "{err}");
}

#[test]
fn store_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kefu.toml");
    std::fs::write(&path, "data = \"/srv/kefu\"\n").unwrap();
    let c = Config::load(Some(&path)).unwrap();
    assert_eq!(c.database_url(), "sqlite:///srv/kefu/kefu.db?mode=rwc");
    assert_eq!(c.key_path(), PathBuf::from("/srv/kefu/kefu.keys"));
    assert_eq!(c.backup_every, Some(Duration::from_secs(86400)));
    std::fs::write(
        &path,
        "database = \"postgres://kefu@db/kefu\"\nencryption = false\nbackup_every = \"off\"\nretention_days = 30\n",
    )
    .unwrap();
    let c = Config::load(Some(&path)).unwrap();
    assert_eq!(c.database_url(), "postgres://kefu@db/kefu");
    assert!(c.keyring().unwrap().is_none());
    assert_eq!((c.backup_every, c.retention_days), (None, Some(30)));
    std::fs::write(&path, "backup_every = \"daily\"\n").unwrap();
    let e = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(e.contains("backup_every"), "{e}");
}

#[test]
fn access_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kefu.toml");
    let c = Config::load(Some(&path)).err();
    assert!(c.is_some(), "an explicit missing file is an error");
    std::fs::write(&path, "secure_cookies = false\nsession_ttl = \"30m\"\n").unwrap();
    let c = Config::load(Some(&path)).unwrap();
    assert!(!c.secure_cookies);
    assert_eq!(c.session_ttl, Duration::from_secs(1800));
    std::fs::write(&path, "session_ttl = \"5s\"\n").unwrap();
    assert!(Config::load(Some(&path)).is_err());
    // Plaintext tokens in the settings are refused with the way forward.
    std::fs::write(&path, "api_tokens = [\"secret\"]\n").unwrap();
    let e = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(e.contains("kefu tokens create"), "{e}");
}

#[test]
fn queues() {
    use crate::agents::queue::Strategy;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kefu.toml");
    std::fs::write(
        &path,
        "[[queue]]\nname = \"billing\"\nstrategy = \"skills\"\nmax_wait = \"2m\"\nwrap_up = \"30s\"\nannounce_every = \"off\"\n\n[[queue]]\nname = \"vip\"\nstrategy = \"ring-all\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&path)).unwrap();
    assert_eq!(c.queues.len(), 2);
    let b = &c.queues[0];
    assert_eq!(
        (b.strategy, b.max_wait, b.wrap_up, b.announce_every),
        (
            Strategy::Skills,
            Duration::from_secs(120),
            Duration::from_secs(30),
            None
        )
    );
    assert_eq!(c.queues[1].strategy, Strategy::RingAll);
    assert_eq!(c.queues[1].ring_timeout, Duration::from_secs(20));
    for bad in [
        "[[queue]]\nname = \"a\"\nstrategy = \"random\"\n",
        "[[queue]]\nname = \"a\"\nring_timeout = \"1s\"\n",
        "[[queue]]\nname = \"a\"\n[[queue]]\nname = \"a\"\n",
        "[[queue]]\nname = \"a\"\nmax_wait = \"soon\"\n",
    ] {
        std::fs::write(&path, bad).unwrap();
        assert!(Config::load(Some(&path)).is_err(), "{bad}");
    }
}

#[test]
fn speech_services_recognition_and_remote_voices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kefu.toml");
    let write = |text: &str| std::fs::write(&path, text).unwrap();
    write(
        "serve_speech = true\n[voices]\nen = \"remote:gpu:alloy\"\n[recognition]\nen = \"gpu\"\nzh = \"local\"\n\n[[speech_service]]\nname = \"gpu\"\nurl = \"http://10.0.0.5:8000/v1/\"\napi_key = \"k\"\ntimeout = \"2s\"\n",
    );
    let c = Config::load(Some(&path)).unwrap();
    assert!(c.serve_speech);
    let s = &c.speech_services[0];
    assert_eq!(
        (s.name.as_str(), s.url.as_str()),
        ("gpu", "http://10.0.0.5:8000/v1")
    );
    assert_eq!(
        (s.timeout, s.api_key.as_deref()),
        (Duration::from_secs(2), Some("k"))
    );
    assert_eq!(s.transcription_model, "whisper-1");
    assert_eq!(c.recognition.len(), 1, "local choices are the default");
    assert_eq!(c.recognition["en"], "gpu");
    for (text, wanted) in [
        (
            "[recognition]\nen = \"gpu\"\n",
            "no [[speech_service]] named \"gpu\"",
        ),
        ("[recognition]\nfr = \"local\"\n", "unknown language \"fr\""),
        (
            "[voices]\nen = \"remote:gpu:alloy\"\n",
            "no [[speech_service]] named \"gpu\"",
        ),
        ("[voices]\nen = \"remote:gpu\"\n", "remote:SERVICE:VOICE"),
        (
            "[[speech_service]]\nname = \"a\"\nurl = \"ftp://x/v1\"\n",
            "http:// or https://",
        ),
        (
            "[[speech_service]]\nname = \"a b\"\nurl = \"http://x/v1\"\n",
            "letters, digits",
        ),
        (
            "[[speech_service]]\nname = \"a\"\nurl = \"http://x/v1\"\ntimeout = \"5m\"\n",
            "between 100ms and 60s",
        ),
        (
            "[[speech_service]]\nname = \"a\"\nurl = \"http://x/v1\"\n[[speech_service]]\nname = \"a\"\nurl = \"http://y/v1\"\n",
            "distinct",
        ),
    ] {
        write(text);
        let err = format!("{:#}", Config::load(Some(&path)).unwrap_err());
        assert!(err.contains(wanted), "{text}: {err}");
    }
}

#[test]
fn a_cluster_node_needs_a_name_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kefu.toml");
    std::fs::write(
        &path,
        "database = \"postgres://db/kefu\"\ncluster_node = \"a-1\"\n",
    )
    .unwrap();
    assert_eq!(
        Config::load(Some(&path)).unwrap().cluster_node.as_deref(),
        Some("a-1")
    );
    for (text, wanted) in [
        ("cluster_node = \"a\"\n", "needs a PostgreSQL"),
        (
            "database = \"postgres://db/kefu\"\ncluster_node = \"a b\"\n",
            "letters, digits",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", Config::load(Some(&path)).unwrap_err());
        assert!(err.contains(wanted), "{text}: {err}");
    }
}
