//! A full-screen program on a pseudo-terminal, read back through a terminal emulator (vt100)
//! as a person would see the screen, and typed at.

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

/// What a person at a 120x40 terminal sees of a program, and their keyboard.
pub struct Screen {
    session: super::Terminal,
    parser: vt100::Parser,
    started: Instant,
}

impl Screen {
    pub fn new(session: super::Terminal) -> Screen {
        let size = |n: u16| std::num::NonZeroU16::new(n).expect("not zero");
        Screen {
            session,
            parser: vt100::Parser::new(size(40), size(120), 0),
            started: Instant::now(),
        }
    }

    /// What the screen shows after reading for `within`.
    pub fn read(&mut self, within: Duration) -> String {
        let until = Instant::now() + within;
        let mut buf = [0u8; 8192];
        while Instant::now() < until {
            match self.session.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.parser.process(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.parser.screen().contents()
    }

    /// Reads until the screen shows `needle`, failing after 20 s with the screen.
    pub fn until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.read(Duration::from_millis(100));
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "`{needle}` never shown ({:?} in):\n{screen}",
                self.started.elapsed()
            );
        }
    }

    pub fn keys(&mut self, keys: &str) {
        self.session.write_all(keys.as_bytes()).expect("type");
        self.session.flush().expect("flush");
    }

    pub fn exit_status(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.read(Duration::from_millis(100));
            if let Ok(expectrl::process::unix::WaitStatus::Exited(_, code)) =
                self.session.get_process().status()
            {
                return code;
            }
            assert!(Instant::now() < deadline, "drillbook did not exit");
        }
    }
}
