//! Kamailio with kefu's shipped configuration (deploy/kamailio/kamailio.cfg) in
//! front of kefu nodes on loopback, and a SIPp caller that goes through it: for
//! the cluster tests and the cluster benchmark.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{Server, wait_udp_bound};

/// A caller through the balancer: INVITE, the 200's Record-Route kept as the
/// route set (SIPp's `rrs`), ACK and, after a moment, BYE along it.
pub const CALL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<scenario name="through kamailio">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:13800138000@[local_ip]:[local_port]>;tag=[pid]T[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:13800138000@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
[last_Call-ID:]
[routes]
CSeq: 1 ACK
Contact: <sip:13800138000@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause milliseconds="1500"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
[last_Call-ID:]
[routes]
CSeq: 2 BYE
Contact: <sip:13800138000@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"#;

/// Kamailio and its worker processes, stopped together when dropped (a
/// failing test included: its workers would otherwise keep running).
pub struct Balancer(Child);

impl Drop for Balancer {
    fn drop(&mut self) {
        // Its own process group: the main process and every worker.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// Kamailio with the shipped configuration, listening on `port`, in front of
/// `nodes`, probing them every second.
pub fn kamailio(dir: &Path, port: u16, nodes: &[&Server]) -> Balancer {
    let list = dir.join("dispatcher.list");
    let lines: Vec<String> = nodes.iter().map(|n| format!("1 sip:{}", n.sip)).collect();
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let child = Command::new("kamailio")
        .args(["-DD", "-E", "-f"])
        .arg(super::repo().join("deploy/kamailio/kamailio.cfg"))
        .args(["-Y"])
        .arg(dir)
        .args([
            "-A",
            &format!("LISTEN=udp:127.0.0.1:{port}"),
            "-A",
            &format!("LISTEN_TCP=tcp:127.0.0.1:{port}"),
            "-A",
            &format!("DS_LIST=\"{}\"", list.display()),
            "-A",
            "PROBE_S=1",
            "-A",
            "CHILDREN=2",
            "-A",
            &format!("CTL_SOCKET=\"unix:{}\"", dir.join("ctl").display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("kamailio is installed by deploy/setup.sh");
    let balancer = Balancer(child);
    wait_udp_bound(port);
    balancer
}
