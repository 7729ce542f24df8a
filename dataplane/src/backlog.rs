//! The control plane's side of a worker's command queue: commands about
//! relays already running (remove, hold, move, rekey) that find the queue
//! full wait here, in order, and go first once the worker has made room —
//! a busy worker delays them, never loses them. New relays are not kept
//! waiting: while anything waits, adding one is refused (the call fails
//! cleanly instead of piling up work). Bounded: past [`BACKLOG_MAX`] even
//! a running relay's command is refused. Everything is counted. Commands
//! are queued without ringing the worker's doorbell: the caller rings it
//! once for what it queued.

use crate::control::{Channel, Command, QueueFull};
use std::collections::VecDeque;

/// Commands kept waiting per worker, at most.
pub const BACKLOG_MAX: usize = 4096;

/// What back-pressure has done so far, summed over workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backpressure {
    /// Commands waiting now.
    pub waiting: u64,
    /// Commands that had to wait (the queue was full when sent).
    pub delayed: u64,
    /// New relays refused because the worker's queue was full or backed up.
    pub adds_refused: u64,
    /// Commands refused because the backlog too was full.
    pub refused: u64,
}

/// One worker's waiting commands.
#[derive(Debug, Default)]
pub struct Backlog {
    waiting: VecDeque<Command>,
    delayed: u64,
    adds_refused: u64,
    refused: u64,
}

impl Backlog {
    /// Sends what waits, in order, while the queue takes it; how many went.
    pub fn flush(&mut self, channel: &Channel) -> usize {
        let mut sent = 0;
        while let Some(cmd) = self.waiting.pop_front() {
            if let Err(cmd) = channel.try_push(cmd) {
                self.waiting.push_front(cmd);
                break;
            }
            sent += 1;
        }
        sent
    }

    /// A new relay: sent now, or refused (never kept waiting).
    pub fn add(&mut self, channel: &Channel, worker: usize, cmd: Command) -> Result<(), QueueFull> {
        self.flush(channel);
        if self.waiting.is_empty() && channel.try_push(cmd).is_ok() {
            return Ok(());
        }
        self.adds_refused += 1;
        Err(QueueFull { worker })
    }

    /// A command about a running relay: sent now, or after what waits.
    pub fn send(
        &mut self,
        channel: &Channel,
        worker: usize,
        cmd: Command,
    ) -> Result<(), QueueFull> {
        self.flush(channel);
        let cmd = if self.waiting.is_empty() {
            match channel.try_push(cmd) {
                Ok(()) => return Ok(()),
                Err(cmd) => cmd,
            }
        } else {
            cmd
        };
        if self.waiting.len() >= BACKLOG_MAX {
            self.refused += 1;
            return Err(QueueFull { worker });
        }
        self.delayed += 1;
        self.waiting.push_back(cmd);
        Ok(())
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Adds this worker's counts to `sum`.
    pub fn count_into(&self, sum: &mut Backpressure) {
        sum.waiting += self.waiting.len() as u64;
        sum.delayed += self.delayed;
        sum.adds_refused += self.adds_refused;
        sum.refused += self.refused;
    }
}

#[cfg(test)]
mod tests {
    use super::{BACKLOG_MAX, Backlog, Backpressure};
    use crate::control::{COMMAND_QUEUE, Channel, Command};
    use crate::relay::RelaySpec;

    fn spec(id: u64) -> Command {
        let key = crate::MasterKey::from_bytes(crate::srtp::Suite::AesCm128HmacSha1_80, &[7; 30])
            .unwrap();
        Command::Add(Box::new(RelaySpec::new(
            id,
            "127.0.0.1".parse().unwrap(),
            40_000,
            40_002,
            crate::srtp::Suite::AesCm128HmacSha1_80,
            key.clone(),
            key,
        )))
    }

    fn counts(b: &Backlog) -> Backpressure {
        let mut sum = Backpressure::default();
        b.count_into(&mut sum);
        sum
    }

    #[test]
    fn a_full_queue_delays_commands_in_order_and_refuses_new_relays() {
        let ch = Channel::new().unwrap();
        let mut b = Backlog::default();
        // The worker is stuck: its queue fills.
        for id in 0..COMMAND_QUEUE as u64 {
            b.send(&ch, 0, Command::ReadStats { id }).unwrap();
        }
        assert!(b.is_empty());
        // Past it, commands wait; a new relay is refused.
        for id in 0..10 {
            b.send(&ch, 0, Command::Remove { id }).unwrap();
        }
        assert!(b.add(&ch, 0, spec(99)).is_err());
        assert_eq!(
            counts(&b),
            Backpressure {
                waiting: 10,
                delayed: 10,
                adds_refused: 1,
                refused: 0
            }
        );
        // The worker takes 4: the first 4 waiting go, in order.
        for _ in 0..4 {
            ch.commands.pop();
        }
        b.flush(&ch);
        assert_eq!(counts(&b).waiting, 6);
        let mut seen = Vec::new();
        while let Some(c) = ch.commands.pop() {
            if let Command::Remove { id } = c {
                seen.push(id);
            }
        }
        assert_eq!(seen, [0, 1, 2, 3]);
        // The queue drained: the rest go at the next send, before it.
        b.send(&ch, 0, Command::Remove { id: 10 }).unwrap();
        let mut seen = Vec::new();
        while let Some(c) = ch.commands.pop() {
            if let Command::Remove { id } = c {
                seen.push(id);
            }
        }
        assert_eq!(seen, [4, 5, 6, 7, 8, 9, 10]);
        assert!(b.is_empty());
        assert!(b.add(&ch, 0, spec(99)).is_ok(), "room again: relays added");
    }

    #[test]
    fn the_backlog_is_bounded() {
        let ch = Channel::new().unwrap();
        let mut b = Backlog::default();
        for id in 0..(COMMAND_QUEUE + BACKLOG_MAX) as u64 {
            b.send(&ch, 0, Command::ReadStats { id }).unwrap();
        }
        assert!(b.send(&ch, 0, Command::Remove { id: 1 }).is_err());
        let c = counts(&b);
        assert_eq!((c.waiting, c.refused), (BACKLOG_MAX as u64, 1));
    }
}
