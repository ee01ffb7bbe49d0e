//! kefu raises its open-file limit at start so `max_calls` calls fit (three file
//! handles each: the RTP socket, the RTP clock's handle on it, an agent's socket when
//! bridged): run in a process of its own, since it changes the process's limits.

use rlimit::Resource;

#[test]
fn the_open_file_limit_is_raised_for_max_calls() {
    let (_, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    // A service manager's usual soft limit (lower here, to see it move).
    rlimit::setrlimit(Resource::NOFILE, 256.min(hard), hard).unwrap();
    kefu::server::open_files_for(1000);
    let (soft, _) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    assert!(
        soft >= (3 * 1000 + 256).min(hard),
        "soft limit {soft}, hard {hard}"
    );
}
