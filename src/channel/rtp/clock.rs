//! One paced sender for every call's outgoing RTP.
//!
//! A call with the IVR hands its outgoing stream (frame clock, RTP sender, playout,
//! hold music) to this clock: one thread that wakes every 2 ms and sends the
//! frames that came due in it. A call's task then no longer wakes 50 times a second
//! to send: it changes what is played (under the stream's lock) and is told when a
//! playout ran out. At 1000 calls that replaces 50,000 task wake-ups a second (a
//! timer, a scheduler turn and the call's whole state pulled into the cache, each)
//! with 500 thread wake-ups that touch only the small outgoing state of the streams
//! due.
//!
//! Streams sit in 10 buckets, one per 2 ms tick of the 20 ms frame: a stream's
//! deadlines (`start + n·20 ms`) always fall in the same bucket, so a tick visits only
//! the streams due in it. A late wake-up visits every bucket it missed, and each
//! stream's `Pacer` then sends the latest slot and skips the missed ones (never a
//! burst). Batching the sends themselves (`sendmmsg`) does not apply here: it sends
//! many datagrams on one socket, and each call has a socket (a port) of its own.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::FRAME_MILLIS;
use super::pacer::Pacer;
use super::sender::RtpSender;
use crate::media::FRAME_SAMPLES;
use crate::media::g711::Law;
use crate::media::playout::{Frame, Playout};
use crate::media::prompt::Prompt;

/// The clock ticks every TICK_MS; a frame has BUCKETS ticks. A stream's frames go
/// out up to one tick after their deadline, always the same part of a tick for a
/// given stream: a constant delay, not jitter. Fewer ticks mean fewer wake-ups of
/// the thread (each a timer and a context switch, dear in a virtual machine).
const TICK_MS: u64 = 2;
const BUCKETS: u64 = FRAME_MILLIS / TICK_MS;

/// What a stream sends; the call changes it under the stream's lock.
#[derive(Debug)]
pub struct Outgoing {
    pub remote: SocketAddr,
    /// False while the caller holds the call (sendonly from them, or inactive).
    pub sends: bool,
    pub law: Law,
    pub payload_type: u8,
    pub pacer: Pacer,
    pub sender: RtpSender,
    playout: Playout,
    /// Looped whenever the playout runs out (hold music while waiting for an agent).
    pub hold: Option<Arc<Prompt>>,
    /// Playouts that ran out (`Frame::Finished`) since the call last looked.
    pub finished: u32,
}

impl Outgoing {
    /// A stream of `law` frames from `start` on, with nothing to play yet.
    pub fn new(remote: SocketAddr, law: Law, payload_type: u8, sender: RtpSender) -> Self {
        Self {
            remote,
            sends: true,
            law,
            payload_type,
            pacer: Pacer::new(Instant::now()),
            sender,
            playout: Playout::default(),
            hold: None,
            finished: 0,
        }
    }

    /// The RTP timestamp of `now` on the stream's clock (what a sender report
    /// pairs with the wall-clock time).
    pub fn rtp_time_at(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.pacer.start());
        let samples = elapsed.as_micros() as u64 * crate::media::SAMPLE_RATE as u64 / 1_000_000;
        self.sender
            .timestamp_for_slot(0)
            .wrapping_add(samples as u32)
    }

    // Every change of what plays forgets the ends counted before it: the call must
    // not take the end of what it just replaced for the end of what it asked for.

    /// Replaces what is playing.
    pub fn play(&mut self, prompts: Vec<Arc<Prompt>>) {
        self.playout.play(prompts);
        self.finished = 0;
    }

    /// Plays `prompt` after what is queued (the next sentence of an answer).
    pub fn append(&mut self, prompt: Arc<Prompt>) {
        self.playout.append(prompt);
        self.finished = 0;
    }

    /// Stops at once (no end is reported).
    pub fn stop(&mut self) {
        self.playout.stop();
        self.finished = 0;
    }

    pub fn is_playing(&self) -> bool {
        self.playout.is_playing()
    }

    /// The prompts that started sounding, in order (for the call record).
    pub fn started(&self) -> &[Arc<Prompt>] {
        &self.playout.started
    }
}

#[derive(Debug)]
struct Stream {
    out: Mutex<Outgoing>,
    socket: UdpSocket,
    /// Wakes the call when a playout ran out.
    ran_out: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Stream {
    fn lock(&self) -> MutexGuard<'_, Outgoing> {
        // A panic while holding the lock leaves plain data behind: keep sending.
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the frame due at `now`, if one is; false once the stream is closed.
    fn tick(&self, now: Instant) -> bool {
        let mut guard = self.lock();
        // Checked under the lock: once `stop` returned and the caller took the lock,
        // no frame goes out any more (a bridge continues the stream from there).
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let o = &mut *guard;
        let Some(slot) = o.pacer.tick(now) else {
            return true;
        };
        let mut payload = [0u8; FRAME_SAMPLES];
        let frame = o.playout.next_payload(o.law, &mut payload);
        if o.sends {
            let mut packet = [0u8; 12 + FRAME_SAMPLES];
            match o.sender.build(o.payload_type, slot, &payload, &mut packet) {
                Ok(n) => match self.socket.send_to(&packet[..n], o.remote) {
                    Ok(_) => {
                        crate::metrics::metrics().rtp_out.inc();
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, remote = %o.remote, "RTP send failed")
                    }
                },
                Err(e) => tracing::error!(error = %e, "RTP packet build failed"),
            }
        }
        if frame == Frame::Finished {
            o.finished += 1;
            self.ran_out.notify_one();
        }
        if !o.playout.is_playing()
            && let Some(hold) = &o.hold
        {
            o.playout.play(vec![hold.clone()]);
        }
        true
    }
}

/// A call's stream on the clock. Dropping it stops the stream.
#[derive(Debug)]
pub struct ClockStream(Arc<Stream>);

impl ClockStream {
    /// The outgoing state, locked: change what plays, read the statistics.
    pub fn lock(&self) -> MutexGuard<'_, Outgoing> {
        self.0.lock()
    }

    /// Stops sending (a bridge takes the stream over); the state stays readable.
    pub fn stop(&self) {
        self.0.closed.store(true, Ordering::Release);
    }

    /// Starts sending: the first frame is due now. Done once the call has said what
    /// to play first, so the stream does not open with a frame of silence.
    pub fn start(&self, clock: &MediaClock) {
        let deadline = {
            let mut o = self.lock();
            o.pacer = Pacer::new(Instant::now());
            o.pacer.deadline()
        };
        clock.schedule(deadline, self.0.clone());
    }

    /// Sends again after a bridge carried the stream on: from the bridge's next
    /// sequence number and timestamp, the first frame due now.
    pub fn resume(&self, clock: &MediaClock, seq: u16, timestamp: u32) {
        let deadline = {
            let mut o = self.lock();
            o.sender.continue_at(seq, timestamp);
            o.pacer = Pacer::new(Instant::now());
            o.pacer.deadline()
        };
        self.0.closed.store(false, Ordering::Release);
        clock.schedule(deadline, self.0.clone());
    }

    /// A waiter for the end of a playout that does not hold the stream itself.
    pub fn ends(&self) -> PlayoutEnds {
        PlayoutEnds(self.0.clone())
    }
}

/// Waits for a stream's playouts to run out.
#[derive(Debug)]
pub struct PlayoutEnds(Arc<Stream>);

impl PlayoutEnds {
    /// Completes when a playout ran out (the count is in `Outgoing::finished`).
    pub async fn next(&self) {
        self.0.ran_out.notified().await
    }
}

impl Drop for ClockStream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shared sender thread.
#[derive(Debug)]
pub struct MediaClock {
    epoch: Instant,
    new_streams: Mutex<Sender<(u64, Arc<Stream>)>>,
}

impl MediaClock {
    /// The process's clock, started on first use.
    pub fn shared() -> &'static MediaClock {
        static CLOCK: OnceLock<MediaClock> = OnceLock::new();
        CLOCK.get_or_init(MediaClock::start)
    }

    fn start() -> Self {
        let epoch = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("kefu-rtp-clock".into())
            .spawn(move || run(epoch, rx));
        if let Err(e) = spawned {
            // Nothing could be sent without it; there is no call to fail over to.
            tracing::error!(error = %e, "cannot start the RTP clock thread");
        }
        Self {
            epoch,
            new_streams: Mutex::new(tx),
        }
    }

    /// A stream sending from `socket`, not started yet (see `ClockStream::start`).
    pub fn stream(&self, out: Outgoing, socket: UdpSocket) -> ClockStream {
        ClockStream(Arc::new(Stream {
            out: Mutex::new(out),
            socket,
            ran_out: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        }))
    }

    fn schedule(&self, deadline: Instant, stream: Arc<Stream>) {
        let sent = self
            .new_streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((self.bucket(deadline), stream));
        if sent.is_err() {
            tracing::error!("the RTP clock thread is gone: this call sends no audio");
        }
    }

    /// The bucket of a deadline: the first tick at or after it (the stream is never
    /// visited early and then skipped for a whole frame).
    fn bucket(&self, deadline: Instant) -> u64 {
        let micros = deadline.saturating_duration_since(self.epoch).as_micros() as u64;
        micros.div_ceil(1000 * TICK_MS) % BUCKETS
    }
}

/// The clock thread's scheduling priority (nice value): above the rest of kefu and
/// of whatever shares the machine, so a busy core delays a frame less (media
/// servers do the same: Asterisk `-p`, FreeSWITCH `-rp`). Taking it needs
/// CAP_SYS_NICE or RLIMIT_NICE; without, the thread runs at normal priority.
const NICE: i32 = -10;

fn raise_priority() {
    // SAFETY: setpriority on the calling thread (its kernel id from gettid) takes
    // no pointers; failure only leaves the priority as it was.
    let raised = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE)
    };
    if raised == 0 {
        tracing::debug!(nice = NICE, "RTP clock thread priority raised");
    } else {
        tracing::info!(
            error = %std::io::Error::last_os_error(),
            "the RTP clock thread runs at normal priority (no CAP_SYS_NICE or RLIMIT_NICE)"
        );
    }
}

fn run(epoch: Instant, new_streams: Receiver<(u64, Arc<Stream>)>) {
    raise_priority();
    let mut buckets: Vec<Vec<Arc<Stream>>> = (0..BUCKETS).map(|_| Vec::new()).collect();
    let mut live = 0usize;
    let mut next_tick = 0u64;
    loop {
        // Idle (no stream at all): sleep until a call brings one.
        if live == 0 {
            match new_streams.recv() {
                Ok((bucket, s)) => {
                    buckets[bucket as usize].push(s);
                    live += 1;
                }
                Err(_) => return,
            }
        }
        while let Ok((bucket, s)) = new_streams.try_recv() {
            buckets[bucket as usize].push(s);
            live += 1;
        }
        let now = Instant::now();
        let tick = (now - epoch).as_millis() as u64 / TICK_MS;
        // Every tick since the last one (a frame's worth at most).
        for t in next_tick.max(tick.saturating_sub(BUCKETS - 1))..=tick {
            let bucket = &mut buckets[(t % BUCKETS) as usize];
            let before = bucket.len();
            bucket.retain(|s| s.tick(now));
            live -= before - bucket.len();
        }
        next_tick = tick + 1;
        let next = epoch + Duration::from_millis(next_tick * TICK_MS);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn phone() -> UdpSocket {
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        phone
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        phone
    }

    fn stream(to: &UdpSocket, ssrc: u32) -> ClockStream {
        let out = Outgoing::new(
            to.local_addr().unwrap(),
            Law::Pcmu,
            0,
            RtpSender::new(ssrc, 100, 1000),
        );
        MediaClock::shared().stream(out, UdpSocket::bind("127.0.0.1:0").unwrap())
    }

    /// The next packets' (sequence, first payload byte) from `ssrc`.
    fn packets(phone: &UdpSocket, ssrc: u32, n: usize) -> Vec<(u16, u8)> {
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        while got.len() < n {
            let (len, _) = phone.recv_from(&mut buf).unwrap();
            let rtp = rtp_rs::RtpReader::new(&buf[..len]).unwrap();
            assert_eq!(rtp.payload().len(), FRAME_SAMPLES);
            if rtp.ssrc() == ssrc {
                got.push((u16::from(rtp.sequence_number()), rtp.payload()[0]));
            }
        }
        got
    }

    #[tokio::test]
    async fn plays_from_the_first_frame_and_tells_when_a_playout_ran_out() {
        let clock = MediaClock::shared();
        let phone = phone();
        let a = stream(&phone, 7);
        let beep = Arc::new(Prompt::from_samples(PathBuf::from("beep"), vec![1000; 400]));
        a.lock().play(vec![beep]);
        let ends = a.ends();
        a.start(clock);
        // 400 samples: frames 0 and 1 are the prompt, frame 2 ends it (padded).
        tokio::time::timeout(Duration::from_secs(2), ends.next())
            .await
            .unwrap();
        assert_eq!(a.lock().finished, 1);
        let sent = packets(&phone, 7, 4);
        let silence = Law::Pcmu.silence();
        let seqs: Vec<u16> = sent.iter().map(|p| p.0).collect();
        assert_eq!(seqs, [100, 101, 102, 103]);
        assert!(sent[..3].iter().all(|p| p.1 != silence), "{sent:?}");
        assert_eq!(sent[3].1, silence);
        // A new playout forgets the end of the old one.
        a.lock().stop();
        assert_eq!(a.lock().finished, 0);
    }

    #[tokio::test]
    async fn streams_in_different_buckets_each_send_in_order_and_stop() {
        let clock = MediaClock::shared();
        let phone = phone();
        // Two streams started apart, most likely in different buckets of the frame
        // (which bucket a deadline falls in is tested below without a clock).
        let a = stream(&phone, 1);
        a.start(clock);
        packets(&phone, 1, 1);
        let b = stream(&phone, 2);
        b.start(clock);
        // Both go on, each frame after the other. (How evenly they are paced is
        // measured by the load bench.)
        for ssrc in [1, 2] {
            let seqs: Vec<u16> = packets(&phone, ssrc, 10).iter().map(|p| p.0).collect();
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
                "{ssrc}: {seqs:?}"
            );
        }
        // Stopped: nothing more goes out, while the other stream sends on.
        a.stop();
        let stopped = a.lock().sender.packets;
        let b_before = b.lock().sender.packets;
        packets(&phone, 2, 10);
        assert!(b.lock().sender.packets >= b_before + 10);
        assert_eq!(a.lock().sender.packets, stopped);
    }

    #[test]
    fn a_deadline_goes_to_the_first_tick_at_or_after_it() {
        let clock = MediaClock::shared();
        let e = clock.epoch;
        assert_eq!(clock.bucket(e + Duration::from_millis(40)), 0);
        assert_eq!(clock.bucket(e + Duration::from_micros(40_001)), 1);
        assert_eq!(clock.bucket(e + Duration::from_micros(42_001)), 2);
        assert_eq!(clock.bucket(e + Duration::from_micros(59_999)), 0);
        assert_eq!(clock.bucket(e + Duration::from_millis(27)), 4);
    }
}
