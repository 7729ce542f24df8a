//! A TCP proxy the test controls, to cut a connection somewhere in the
//! middle (the network failing) without touching either end: `cut` closes
//! every connection through it and refuses new ones until `restore`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
struct State {
    up: bool,
    streams: Vec<TcpStream>,
    accepted: u64,
    refused: u64,
}

/// A running proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    state: Arc<Mutex<State>>,
    /// Where it listens.
    pub listen: SocketAddr,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Proxy {
    /// Forwards connections to `listen` on to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(listen).expect("the proxy's port");
        let state = Arc::new(Mutex::new(State {
            up: true,
            ..State::default()
        }));
        let s = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mut st = s.lock().unwrap();
                if !st.up {
                    st.refused += 1;
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                st.accepted += 1;
                for t in [&client, &server] {
                    if let Ok(c) = t.try_clone() {
                        st.streams.push(c);
                    }
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(client, server));
                std::thread::spawn(move || pump(s2, c2));
            }
        });
        Proxy { state, listen }
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        let mut st = self.state.lock().unwrap();
        st.up = false;
        for s in st.streams.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.lock().unwrap().up = true;
    }

    /// Connections let through, and refused while cut.
    pub fn counts(&self) -> (u64, u64) {
        let st = self.state.lock().unwrap();
        (st.accepted, st.refused)
    }
}
