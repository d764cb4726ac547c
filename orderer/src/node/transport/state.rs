//! State transfer over the replica listener: a replica that lost its storage asks every
//! peer for its vote horizon (`Replica/Horizon`), and a replica behind every peer's
//! retained log copies a peer's application state (`Replica/Snapshot`). Both are
//! served only to replicas of the configuration (the connection's client certificate).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proto::synod::replica as pb;
use proto::synod::replica::replica_client::ReplicaClient;
use proto::tonic::transport::Endpoint;
use proto::tonic::{Status, Streaming};
use tokio::sync::mpsc;

use crate::core::{ReplicaId, Slot};
use crate::storage::Store;

/// Snapshot chunks aim at this size: large enough to amortise a message, far below
/// the frame limit.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Chunks read ahead of the network per snapshot being served.
const SNAPSHOT_CHUNKS_AHEAD: usize = 4;

/// A single horizon question must not hang a rejoining replica.
const HORIZON_TIMEOUT: Duration = Duration::from_secs(3);

/// This replica's vote horizon as the consensus loop last published it.
#[derive(Debug, Default)]
pub struct HorizonCell {
    /// Nothing is answered until the loop has restored its state and published, so a
    /// restarting replica is never mistaken for one that knows nothing.
    published: AtomicBool,
    /// Set while this replica rejoins with empty storage: it knows of nothing.
    rejoining: AtomicBool,
    /// This replica's rejoin attempt, while `rejoining`.
    attempt: AtomicU64,
    horizon: AtomicU64,
    /// Rejoin attempts of peers seen while this replica was rejoining itself: such a
    /// peer has not voted since its storage went blank, and this replica knew nothing
    /// before it started, so nothing this replica learned since involves that peer's
    /// votes. Answering those attempts with 0 lets a new cluster, all of whose
    /// replicas start blank, start without fencing each other.
    blank_peers: std::sync::Mutex<Vec<u64>>,
}

impl HorizonCell {
    /// Published after each durable write, before that write's messages leave: a
    /// peer never learns of a vote the horizon does not cover.
    pub fn publish(&self, vote_horizon: Slot) {
        self.horizon.fetch_max(vote_horizon, Ordering::SeqCst);
        self.rejoining.store(false, Ordering::SeqCst);
        self.published.store(true, Ordering::SeqCst);
    }

    pub fn set_rejoining(&self, attempt: u64) {
        self.attempt.store(attempt, Ordering::SeqCst);
        self.rejoining.store(true, Ordering::SeqCst);
    }

    /// Called while rejoining, for a peer that answered it is rejoining too.
    pub fn note_blank_peer(&self, attempt: u64) {
        let mut seen = self.blank_peers.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains(&attempt) {
            // Bounded: a replica has few peers, each with few attempts while it waits.
            if seen.len() >= MAX_BLANK_PEERS {
                seen.remove(0);
            }
            seen.push(attempt);
        }
    }

    fn reply(&self, asker_attempt: u64) -> Result<pb::HorizonReply, Status> {
        if self.rejoining.load(Ordering::SeqCst) {
            return Ok(pb::HorizonReply {
                serving: false,
                vote_horizon: 0,
                attempt: self.attempt.load(Ordering::SeqCst),
            });
        }
        if !self.published.load(Ordering::SeqCst) {
            return Err(Status::unavailable("this replica is still starting"));
        }
        let seen_blank = self
            .blank_peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&asker_attempt);
        Ok(pb::HorizonReply {
            serving: true,
            vote_horizon: if seen_blank {
                0
            } else {
                self.horizon.load(Ordering::SeqCst)
            },
            attempt: 0,
        })
    }
}

const MAX_BLANK_PEERS: usize = 64;

/// What the replica listener serves besides `Exchange`.
#[derive(Clone)]
pub struct StateSource {
    pub store: Arc<Store>,
    pub horizon: Arc<HorizonCell>,
}

impl StateSource {
    pub(super) fn horizon_reply(&self, asker_attempt: u64) -> Result<pb::HorizonReply, Status> {
        self.horizon.reply(asker_attempt)
    }

    /// Streams the application state, read on a blocking thread from one consistent
    /// RocksDB snapshot, at most a few chunks ahead of the network.
    pub(super) fn snapshot(
        &self,
        min_slot: Slot,
    ) -> mpsc::Receiver<Result<pb::SnapshotChunk, Status>> {
        let (chunks, receiver) = mpsc::channel(SNAPSHOT_CHUNKS_AHEAD);
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut too_old = false;
            let result =
                store.export_applications(SNAPSHOT_CHUNK_BYTES, |applied_upto, entries, last| {
                    if applied_upto < min_slot {
                        too_old = true;
                        return false;
                    }
                    let chunk = pb::SnapshotChunk {
                        applied_upto,
                        entries: entries
                            .into_iter()
                            .map(|(table, key, value)| pb::SnapshotEntry {
                                table: table.name().to_string(),
                                key,
                                value,
                            })
                            .collect(),
                        last,
                    };
                    // The asker went away: stop reading.
                    chunks.blocking_send(Ok(chunk)).is_ok()
                });
            let failure = match result {
                Err(e) => Some(Status::unavailable(format!("snapshot: {e}"))),
                Ok(()) if too_old => Some(Status::failed_precondition(format!(
                    "this replica has not applied up to slot {min_slot} yet"
                ))),
                Ok(()) => None,
            };
            if let Some(status) = failure {
                let _ = chunks.blocking_send(Err(status));
            }
        });
        receiver
    }
}

/// One-off calls to peers (state transfer), over the same mutual TLS as `Exchange`.
#[derive(Clone)]
pub struct PeerClients {
    pub(super) endpoints: Vec<(ReplicaId, Endpoint)>,
    pub(super) max_frame_bytes: usize,
}

impl PeerClients {
    pub fn peers(&self) -> Vec<ReplicaId> {
        self.endpoints.iter().map(|(id, _)| *id).collect()
    }

    async fn client(
        &self,
        peer: ReplicaId,
    ) -> Result<ReplicaClient<proto::tonic::transport::Channel>, String> {
        let endpoint = self
            .endpoints
            .iter()
            .find(|(id, _)| *id == peer)
            .map(|(_, e)| e.clone())
            .ok_or_else(|| format!("replica {peer} is not a peer"))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot reach replica {peer}: {e}"))?;
        Ok(ReplicaClient::new(channel)
            .max_decoding_message_size(self.max_frame_bytes)
            .max_encoding_message_size(self.max_frame_bytes))
    }

    /// The peer's answer to rejoin attempt `attempt`.
    pub async fn horizon(&self, peer: ReplicaId, attempt: u64) -> Result<pb::HorizonReply, String> {
        let call = async {
            let mut client = self.client(peer).await?;
            let reply = client
                .horizon(pb::HorizonRequest { attempt })
                .await
                .map_err(|s| format!("replica {peer}: {}", s.message()))?
                .into_inner();
            Ok(reply)
        };
        tokio::time::timeout(HORIZON_TIMEOUT, call)
            .await
            .map_err(|_| format!("replica {peer} did not answer within {HORIZON_TIMEOUT:?}"))?
    }

    /// A snapshot stream from `peer` covering at least every slot below `min_slot`.
    pub async fn snapshot(
        &self,
        peer: ReplicaId,
        min_slot: Slot,
    ) -> Result<Streaming<pb::SnapshotChunk>, String> {
        let mut client = self.client(peer).await?;
        let stream = client
            .snapshot(pb::SnapshotRequest { min_slot })
            .await
            .map_err(|s| format!("replica {peer}: {}", s.message()))?
            .into_inner();
        Ok(stream)
    }
}
