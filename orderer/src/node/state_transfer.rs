//! The asking side of state transfer, between the consensus loop and the network.
//!
//! * [`rejoin_horizons`]: a replica that starts with empty storage asks every other
//!   replica for its vote horizon before it votes at all (`Core::rejoin`).
//! * [`spawn_fetcher`]: when the core asks for a snapshot, a task fetches one from a
//!   peer and hands the loop a [`SnapshotFeed`]; the loop writes it into the store.

use std::sync::mpsc::SyncSender;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::core::{ReplicaId, Slot, SnapshotRequest};
use crate::node::runtime::{Input, offer};
use crate::node::transport::{HorizonCell, PeerClients};
use crate::storage::Table;

/// Entries of one chunk, and whether it is the last.
pub type SnapshotChunk = (Vec<(Table, Vec<u8>, Vec<u8>)>, bool);

/// A snapshot arriving from a peer: the apply point it matches, and its chunks. The
/// stream ends with a chunk marked last; an error or an early end means the transfer
/// failed.
pub struct SnapshotFeed {
    pub peer: ReplicaId,
    pub applied_upto: Slot,
    pub chunks: mpsc::Receiver<Result<SnapshotChunk, String>>,
}

/// Chunks buffered between the network and the loop.
const FEED_CHUNKS: usize = 4;

/// A peer that stops sending for this long has failed the transfer.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between rounds of horizon questions while some replica has not answered.
const HORIZON_RETRY: Duration = Duration::from_millis(500);

/// Asks every peer for its vote horizon until all have answered. A peer that is
/// itself rejoining with empty storage knows of nothing and counts as 0. Waits as long
/// as it takes: voting with a fence computed from fewer replicas could contradict
/// votes this replica gave before it lost its storage.
pub async fn rejoin_horizons(
    clients: &PeerClients,
    horizon: &HorizonCell,
    me: ReplicaId,
) -> Vec<Slot> {
    let attempt = random_attempt();
    horizon.set_rejoining(attempt);
    let peers = clients.peers();
    let mut answers: Vec<Option<Slot>> = vec![None; peers.len()];
    let mut rounds = 0u64;
    loop {
        for (index, peer) in peers.iter().enumerate() {
            if answers[index].is_some() {
                continue;
            }
            match clients.horizon(*peer, attempt).await {
                Ok(reply) if reply.serving => answers[index] = Some(reply.vote_horizon),
                Ok(reply) => {
                    horizon.note_blank_peer(reply.attempt);
                    answers[index] = Some(0);
                }
                Err(why) if rounds % 10 == 0 => eprintln!(
                    "orderer{me}: storage is empty; waiting for every replica's vote horizon \
                     before voting ({why})"
                ),
                Err(_) => {}
            }
        }
        if answers.iter().all(Option::is_some) {
            return answers.into_iter().flatten().collect();
        }
        rounds += 1;
        tokio::time::sleep(HORIZON_RETRY).await;
    }
}

/// A rejoin attempt id: distinct across restarts and replicas with overwhelming
/// probability.
fn random_attempt() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

/// Starts the task that fetches snapshots for the loop; the returned sender takes the
/// core's requests (a request made while one is being served is dropped: the core asks
/// again if it still needs one).
pub fn spawn_fetcher(
    clients: PeerClients,
    inbox: SyncSender<Input>,
    me: ReplicaId,
) -> mpsc::Sender<SnapshotRequest> {
    let (requests, mut incoming) = mpsc::channel::<SnapshotRequest>(1);
    tokio::spawn(async move {
        while let Some(request) = incoming.recv().await {
            fetch(&clients, &inbox, me, request).await;
        }
    });
    requests
}

/// Tries the suggested peer, then the others, until one streams a snapshot that
/// covers `min_slot`; forwards it to the loop.
async fn fetch(
    clients: &PeerClients,
    inbox: &SyncSender<Input>,
    me: ReplicaId,
    request: SnapshotRequest,
) {
    let mut peers = clients.peers();
    peers.sort_by_key(|p| *p != request.peer);
    for peer in peers {
        let mut stream = match clients.snapshot(peer, request.min_slot).await {
            Ok(stream) => stream,
            Err(why) => {
                eprintln!("orderer{me}: no snapshot from replica {peer}: {why}");
                continue;
            }
        };
        let first = match tokio::time::timeout(CHUNK_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => continue,
            Ok(Err(status)) => {
                eprintln!(
                    "orderer{me}: no snapshot from replica {peer}: {}",
                    status.message()
                );
                continue;
            }
            Err(_) => {
                eprintln!("orderer{me}: replica {peer} sent no snapshot within {CHUNK_TIMEOUT:?}");
                continue;
            }
        };
        let applied_upto = first.applied_upto;
        let (chunks, receiver) = mpsc::channel(FEED_CHUNKS);
        let feed = SnapshotFeed {
            peer,
            applied_upto,
            chunks: receiver,
        };
        if !offer(inbox, Input::Snapshot(feed)) {
            return;
        }
        let mut next = Some(first);
        while let Some(chunk) = next.take() {
            if chunk.applied_upto != applied_upto {
                let _ = chunks
                    .send(Err(format!(
                        "replica {peer} changed the snapshot's apply point"
                    )))
                    .await;
                return;
            }
            let last = chunk.last;
            let entries = chunk
                .entries
                .into_iter()
                .map(|e| match Table::from_name(&e.table) {
                    Some(table) => Ok((table, e.key, e.value)),
                    None => Err(format!("replica {peer} sent unknown table {:?}", e.table)),
                })
                .collect::<Result<Vec<_>, String>>();
            let entries = match entries {
                Ok(entries) => entries,
                Err(why) => {
                    let _ = chunks.send(Err(why)).await;
                    return;
                }
            };
            if chunks.send(Ok((entries, last))).await.is_err() || last {
                // The loop refused it (nothing newer than it has), or it is complete.
                return;
            }
            next = match tokio::time::timeout(CHUNK_TIMEOUT, stream.message()).await {
                Ok(Ok(Some(chunk))) => Some(chunk),
                Ok(Ok(None)) => None,
                Ok(Err(status)) => {
                    let _ = chunks.send(Err(status.message().to_string())).await;
                    return;
                }
                Err(_) => {
                    let _ = chunks
                        .send(Err(format!("replica {peer} stalled for {CHUNK_TIMEOUT:?}")))
                        .await;
                    return;
                }
            };
        }
        // The stream ended before its last chunk; dropping `chunks` tells the loop.
        return;
    }
}
