//! Host names to addresses, and the TCP connection to them.
//!
//! `getaddrinfo` blocks, so it runs off the I/O thread, on at most [`MAX_THREADS`] resolver
//! threads that end as soon as no lookup is waiting: glibc keeps a resolver context per thread
//! and frees it at thread exit, so nothing is left behind (on a pooled thread alive at process
//! exit valgrind called it lost), and a resolver thread that cannot start is a transient connect
//! error at once. Fewer lookups also mean fewer `getenv` calls on our threads racing a
//! `setenv` on the application's (README "Threads"): an IP literal is never looked up, a name
//! is looked up once for every handle waiting on it, and its addresses are reused for
//! [`FRESH`] unless connecting to all of them failed. A handle's destroy waits for resolver threads
//! with nothing left to look up to have ended ([`settle`]).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::runtime;
use crate::error::Error;

/// Lookups of different names running at once.
pub const MAX_THREADS: usize = 2;
/// How long the addresses of a name are reused.
pub const FRESH: Duration = Duration::from_secs(30);
/// How long [`settle`] waits for a resolver thread that is handing out its last answers.
const SETTLE: Duration = Duration::from_millis(100);

type Addresses = Arc<[SocketAddr]>;
type Answer = Result<Addresses, Error>;
type Key = (String, u16);

#[derive(Default)]
struct State {
    /// The process this state belongs to (see [`state`]).
    pid: u32,
    /// In a child of fork(): the parent's, kept and never used again.
    _inherited: Option<Box<State>>,
    known: HashMap<Key, (Instant, Addresses)>,
    /// Names queued or being looked up, with everyone waiting for each.
    waiting: HashMap<Key, Vec<oneshot::Sender<Answer>>>,
    queue: VecDeque<Key>,
    /// Resolver threads serving the queue.
    threads: usize,
    /// Resolver threads started and not yet joined.
    started: Vec<JoinHandle<()>>,
    /// How many times each name was looked up.
    #[cfg(test)]
    lookups: HashMap<Key, usize>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// This process's state. In a child of fork() the parent's resolver threads do not exist: its
/// queue would never be served, so the child starts empty (the parent's is left untouched).
fn state(slot: &mut Option<State>) -> &mut State {
    static FORK_HANDLER: std::sync::Once = std::sync::Once::new();
    super::fork::on_fork_in_child(&FORK_HANDLER, release_in_child);
    let pid = std::process::id();
    if slot.as_ref().is_some_and(|s| s.pid != pid) {
        *slot = Some(State {
            pid,
            _inherited: slot.take().map(Box::new),
            ..State::default()
        });
    }
    slot.get_or_insert_with(|| State {
        pid,
        ..State::default()
    })
}

/// A resolver thread or the I/O thread may hold the lock at the instant of a fork.
extern "C" fn release_in_child() {
    super::fork::release_in_child(&STATE);
}

/// A TCP connection to `host:port`, trying each address in turn.
pub async fn connect(host: &str, port: u16) -> Result<TcpStream, Error> {
    let failed = |why: String| Error::Connect {
        target: super::Endpoint {
            host: host.to_owned(),
            port,
        }
        .to_string(),
        why,
    };
    let addresses = addresses(host, port).await.map_err(|e| match e {
        Error::Connect { why, .. } => failed(why),
        other => other,
    })?;
    let mut last = None;
    for address in addresses.iter() {
        match TcpStream::connect(*address).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(format!("{address}: {e}")),
        }
    }
    // Perhaps the name has moved: look it up again next time.
    forget(host, port);
    Err(failed(last.unwrap_or_else(|| "no address".into())))
}

/// The addresses of `host`, looked up only when it is not an IP literal.
pub async fn addresses(host: &str, port: u16) -> Answer {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Arc::new([SocketAddr::new(ip, port)]));
    }
    let key = (host.to_owned(), port);
    let answer = {
        let mut slot = STATE.lock();
        let state = state(&mut slot);
        if let Some((at, addresses)) = state.known.get(&key) {
            if at.elapsed() < FRESH {
                return Ok(addresses.clone());
            }
        }
        let (tx, rx) = oneshot::channel();
        match state.waiting.get_mut(&key) {
            Some(waiters) => waiters.push(tx),
            None => {
                state.waiting.insert(key.clone(), vec![tx]);
                state.queue.push_back(key);
                if let Err(e) = start_thread(state) {
                    // No thread to serve the queue: everyone queued hears why, now.
                    for key in std::mem::take(&mut state.queue) {
                        for waiter in state.waiting.remove(&key).unwrap_or_default() {
                            let _ = waiter.send(Err(e.clone()));
                        }
                    }
                }
            }
        }
        rx
    };
    answer.await.unwrap_or_else(|_| {
        Err(Error::Internal(
            "a name-resolution thread ended without an answer".into(),
        ))
    })
}

/// Another resolver thread when fewer than [`MAX_THREADS`] run; an error only when none runs
/// and none could start (a running one serves the queue).
fn start_thread(state: &mut State) -> Result<(), Error> {
    if state.threads >= MAX_THREADS {
        return Ok(());
    }
    match runtime::spawn_thread("prov-mqtt-dns", serve) {
        Ok(thread) => {
            state.threads += 1;
            // those that ended long ago are detached (dropped), not waited for
            state.started.retain(|t| !t.is_finished());
            state.started.push(thread);
            Ok(())
        }
        Err(_) if state.threads > 0 => Ok(()),
        Err(Error::ThreadStart { why, .. }) => Err(Error::ThreadStart {
            thread: "name-resolution",
            why,
        }),
        Err(other) => Err(other),
    }
}

/// A resolver thread: looks names up until the queue is empty, then ends.
fn serve() {
    loop {
        let key = {
            let mut slot = STATE.lock();
            let state = state(&mut slot);
            match state.queue.pop_front() {
                Some(key) => key,
                None => {
                    state.threads -= 1;
                    return;
                }
            }
        };
        let answer = lookup(&key.0, key.1);
        let waiters = {
            let mut slot = STATE.lock();
            let state = state(&mut slot);
            if let Ok(addresses) = &answer {
                state.known.retain(|_, (at, _)| at.elapsed() < FRESH);
                state
                    .known
                    .insert(key.clone(), (Instant::now(), addresses.clone()));
            }
            #[cfg(test)]
            {
                *state.lookups.entry(key.clone()).or_default() += 1;
            }
            state.waiting.remove(&key).unwrap_or_default()
        };
        for waiter in waiters {
            let _ = waiter.send(answer.clone());
        }
    }
}

fn lookup(host: &str, port: u16) -> Answer {
    let failed = |why: String| Error::Connect {
        target: format!("{host}:{port}"),
        why,
    };
    let found: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| failed(format!("cannot resolve {host:?}: {e}")))?
        .collect();
    match found.is_empty() {
        true => Err(failed(format!("{host:?} has no address"))),
        false => Ok(found.into()),
    }
}

/// Waits for the resolver threads to end when nothing is left for them to look up, so that
/// none is still ending when the application exits right after destroying its handle: a thread
/// ends by freeing glibc's resolver context, and one caught half way by the process exit leaves
/// that context lost (valgrind reports it). A lookup under way (another handle's, perhaps
/// waiting on a slow DNS server) is not waited for; a thread handing out its last answers is
/// waited for up to [`SETTLE`].
pub fn settle() {
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut slot = STATE.lock();
        // (in a child of fork() before any lookup: the parent's threads are not ours to join)
        let pid = std::process::id();
        let Some(state) = slot.as_mut().filter(|s| s.pid == pid) else {
            return;
        };
        if !state.waiting.is_empty() {
            return;
        }
        if state.threads == 0 {
            // each has left `serve` and is only ending: joining takes microseconds
            let ending = std::mem::take(&mut state.started);
            drop(slot);
            for thread in ending {
                let _ = thread.join();
            }
            return;
        }
        drop(slot);
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Drops the remembered addresses of `host:port`.
pub fn forget(host: &str, port: u16) {
    let mut slot = STATE.lock();
    state(&mut slot).known.remove(&(host.to_owned(), port));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        runtime::handle().unwrap().spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv_timeout(Duration::from_secs(30)).unwrap()
    }

    #[test]
    fn an_ip_literal_is_not_looked_up() {
        let v4 = run(addresses("127.0.0.1", 8883)).unwrap();
        assert_eq!(&v4[..], &["127.0.0.1:8883".parse().unwrap()]);
        let v6 = run(addresses("::1", 443)).unwrap();
        assert_eq!(&v6[..], &["[::1]:443".parse().unwrap()]);
        assert!(!STATE
            .lock()
            .as_ref()
            .is_some_and(|s| s.known.contains_key(&("127.0.0.1".into(), 8883))));
    }

    #[test]
    fn a_name_is_looked_up_once_for_everyone_waiting_and_remembered() {
        let answers = run(async {
            let lookups = (0..20).map(|_| addresses("localhost", 1883));
            futures_util::future::join_all(lookups).await
        });
        let first = answers[0].clone().unwrap();
        assert!(first
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 1883));
        assert!(answers.iter().all(|a| a.as_ref().unwrap() == &first));
        let slot = STATE.lock();
        let state = slot.as_ref().unwrap();
        let key = ("localhost".to_owned(), 1883);
        assert!(state.known.contains_key(&key));
        assert_eq!(state.lookups.get(&key), Some(&1));
        assert!(!state.waiting.contains_key(&key) && !state.queue.contains(&key));
    }

    #[test]
    fn a_name_that_does_not_resolve_is_a_connect_error_naming_it() {
        let e = run(connect("no-such-host.invalid", 8883)).unwrap_err();
        assert!(e.is_transient(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("no-such-host.invalid:8883") && text.contains("cannot resolve"),
            "{text}"
        );
    }

    #[test]
    fn a_refused_connection_is_a_connect_error_and_the_addresses_are_forgotten() {
        // a port nobody listens on: bind one, then close it
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = run(connect("localhost", port)).unwrap_err();
        assert!(matches!(e, Error::Connect { .. }), "{e}");
        assert!(!STATE
            .lock()
            .as_ref()
            .unwrap()
            .known
            .contains_key(&("localhost".into(), port)));
    }
}
