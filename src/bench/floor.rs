//! `steward bench floor`: what this machine's disk and loopback allow a durable replicated write
//! at best, measured with no Raft, no HTTP and no steward code in the way. The one-writer latency
//! of `steward bench writes` is judged against these figures (issue 2 asks for 3x the disk's
//! fsync floor).
//!
//! - **in place**: `fdatasync` after a 4 KiB write over 64 blocks of one file, which never grows:
//!   the disk's fsync floor (the figure issue 2 names).
//! - **append**: `fdatasync` after appending 300 bytes (about one Raft entry) to a growing file,
//!   one writer: what a log's flush costs when nothing else writes.
//! - **replicated**: one write of three members on this machine, reduced to its disk and network
//!   waits. The "leader" sends 300 bytes over loopback TCP to two "follower" threads, appends them
//!   to its own file and `fdatasync`s it; each follower appends, `fdatasync`s and answers. The
//!   write is done when the leader's flush and the first answer are both in: a majority of three,
//!   as Raft needs. The three flushes share one disk, as the members of `steward bench writes` do.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Rounds per figure.
    #[arg(long, default_value_t = 2000)]
    pub rounds: usize,
    /// Directory on the disk to measure [default: the temporary directory, where `steward bench
    /// writes` puts its members].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// p50 and p99 of one figure.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub p50: Duration,
    pub p99: Duration,
}

impl Spread {
    fn of(mut v: Vec<Duration>) -> Spread {
        v.sort();
        Spread { p50: super::percentile(&v, 0.50), p99: super::percentile(&v, 0.99) }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p50 {:>4} us  p99 {:>4} us", self.p50.as_micros(), self.p99.as_micros())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Floors {
    pub in_place: Spread,
    pub append: Spread,
    pub replicated: Spread,
}

const ENTRY: usize = 300;

/// A file that removes itself when dropped.
struct Scratch {
    file: std::fs::File,
    path: PathBuf,
}

impl Scratch {
    fn new(dir: &Path, name: &str) -> anyhow::Result<Scratch> {
        let path = dir.join(format!("floor-{}-{name}.tmp", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { file, path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `fdatasync` after each of `rounds` writes of `len` bytes, the i-th at `offset(i)`.
fn flushes(dir: &Path, name: &str, rounds: usize, len: usize, offset: impl Fn(usize) -> u64) -> anyhow::Result<Spread> {
    let s = Scratch::new(dir, name)?;
    let data = vec![b'x'; len];
    let mut v = Vec::with_capacity(rounds);
    for i in 0..rounds {
        s.file.write_all_at(&data, offset(i))?;
        let t = Instant::now();
        s.file.sync_data()?;
        v.push(t.elapsed());
    }
    Ok(Spread::of(v))
}

/// Appends each entry the leader sends, flushes, and answers with the entry's round number.
fn follower(listener: TcpListener, file: Scratch) -> anyhow::Result<()> {
    let (mut conn, _) = listener.accept()?;
    conn.set_nodelay(true)?;
    let mut entry = [0u8; ENTRY];
    let mut offset = 0u64;
    while conn.read_exact(&mut entry).is_ok() {
        file.file.write_all_at(&entry, offset)?;
        offset += ENTRY as u64;
        file.file.sync_data()?;
        conn.write_all(&entry[..8])?;
    }
    Ok(())
}

fn replicated(dir: &Path, rounds: usize) -> anyhow::Result<Spread> {
    let mut followers = Vec::new();
    let mut threads = Vec::new();
    for i in 0..2 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let file = Scratch::new(dir, &format!("follower{i}"))?;
        threads.push(std::thread::spawn(move || follower(listener, file)));
        let conn = TcpStream::connect(addr)?;
        conn.set_nodelay(true)?;
        followers.push(conn);
    }
    let own = Scratch::new(dir, "leader")?;
    let mut entry = [b'x'; ENTRY];
    let mut v = Vec::with_capacity(rounds);
    for round in 0..rounds as u64 {
        entry[..8].copy_from_slice(&round.to_le_bytes());
        let t = Instant::now();
        for f in &mut followers {
            f.write_all(&entry)?;
        }
        own.file.write_all_at(&entry, round * ENTRY as u64)?;
        own.file.sync_data()?;
        // Whichever follower answers first completes the majority. The slower one's answer to
        // an earlier round may still be queued: skip it.
        while first_answer(&mut followers)? != round {}
        v.push(t.elapsed());
    }
    for f in &followers {
        f.shutdown(std::net::Shutdown::Write)?;
    }
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("a follower thread panicked"))??;
    }
    Ok(Spread::of(v))
}

/// Waits until a follower's connection has an answer, and reads it.
fn first_answer(followers: &mut [TcpStream]) -> anyhow::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> =
        followers.iter().map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10_000) };
    anyhow::ensure!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    let ready = fds.iter().position(|p| p.revents != 0).context("no follower answered within 10 s")?;
    let mut round = [0u8; 8];
    followers[ready].read_exact(&mut round).context("a follower closed its connection")?;
    Ok(u64::from_le_bytes(round))
}

/// Measures the three floors in `dir`.
pub fn measure(dir: &Path, rounds: usize) -> anyhow::Result<Floors> {
    Ok(Floors {
        // 64 blocks of one file, rewritten in turn: the file never grows.
        in_place: flushes(dir, "in-place", rounds, 4096, |i| (i % 64) as u64 * 4096)?,
        append: flushes(dir, "append", rounds, ENTRY, |i| (i * ENTRY) as u64)?,
        replicated: replicated(dir, rounds)?,
    })
}

pub fn print(f: &Floors) {
    println!("floor    fdatasync in place (4 KiB)          {}", f.in_place);
    println!("floor    fdatasync after a 300-byte append   {}", f.append);
    println!("floor    replicated append, 3 members        {}", f.replicated);
}

pub fn floor(args: FloorArgs) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(std::env::temp_dir);
    println!("steward bench floor: {} rounds each, in {}", args.rounds, dir.display());
    print(&measure(&dir, args.rounds)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_every_floor_and_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let f = measure(dir.path(), 20).unwrap();
        for s in [f.in_place, f.append, f.replicated] {
            assert!(s.p50 > Duration::ZERO && s.p50 <= s.p99, "{s}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
