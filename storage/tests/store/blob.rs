//! sled's blob files, under failure. A value over a quarter segment is written to a file of its
//! own while its IO buffer space is already claimed; vendored sled must leave that claim when
//! the file cannot be written (vendor/README.md, change 7), or every later flush waits forever.

use std::sync::mpsc;
use std::time::Duration;

#[test]
fn a_failed_blob_write_fails_its_insert_and_later_flushes_still_finish() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    db.insert("small", "before").unwrap();
    // Without its directory, the next blob file cannot be created.
    std::fs::remove_dir_all(dir.path().join("blobs")).unwrap();
    assert!(db.insert("big", vec![7u8; 300 * 1024]).is_err());

    let (tx, rx) = mpsc::channel();
    let flusher = db.clone();
    std::thread::spawn(move || {
        let _ = tx.send(flusher.flush().map(|_| ()));
    });
    // A leaked claim makes the flush wait forever; 30 s is far beyond any real flush.
    let flushed = rx.recv_timeout(Duration::from_secs(30)).expect("the flush never finished");
    flushed.unwrap();
    assert_eq!(db.get("small").unwrap().as_deref(), Some(&b"before"[..]));
    assert_eq!(db.get("big").unwrap(), None);
}
