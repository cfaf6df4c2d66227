//! Redis Streams as a log service: a stream key per run and channel,
//! writers sending pipelined `XADD`s, followers looping on `XREAD BLOCK`
//! over a connection of their own (a blocked read holds its connection).

use std::collections::VecDeque;

use redis::{AsyncConnectionConfig, Value, aio::MultiplexedConnection};
use tokio::task::JoinHandle;

use super::{Delivered, peers::PeerAddr};
use crate::error::{BenchError, Context, Result};

/// Pipelines a writer keeps in flight at most. One: two pipelines sent
/// from two tasks over one connection could reach the server in either
/// order, and a writer's lines must stay in order.
const PIPELINES_IN_FLIGHT: usize = 1;

/// Entries an `XREAD` returns at most.
const READ_COUNT: usize = 1024;

/// A Redis server, emptied.
#[derive(Debug)]
pub(crate) struct RedisSystem {
    /// The client, for new connections.
    client: redis::Client,
    /// Its process id.
    pub(crate) pid: Option<u32>,
}

impl RedisSystem {
    /// Connects and empties the database.
    pub(crate) async fn start(peer: &PeerAddr) -> Result<Self> {
        let client = redis::Client::open(peer.url.as_str()).context("bad redis url")?;
        let system = Self {
            client,
            pid: peer.pid,
        };
        let mut conn = system.connect().await?;
        redis::cmd("FLUSHALL")
            .arg("SYNC")
            .query_async::<()>(&mut conn)
            .await
            .context("FLUSHALL failed")?;
        Ok(system)
    }

    /// A new connection, with no reply timeout (a blocked read may wait).
    pub(crate) async fn connect(&self) -> Result<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new().set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .context("cannot connect to redis")
    }

    /// A follower of `run`'s stdout on a connection of its own.
    pub(crate) async fn follower(&self, run: &str) -> Result<RedisFollower> {
        Ok(RedisFollower {
            conn: self.connect().await?,
            key: key(run),
            last_id: "0-0".to_owned(),
        })
    }
}

/// The stream key of a run's stdout.
fn key(run: &str) -> String {
    format!("run:{run}:stdout")
}

/// Pipelined `XADD`s of one run's lines.
#[derive(Debug)]
pub(crate) struct RedisWriter {
    /// The connection.
    conn: MultiplexedConnection,
    /// The stream key.
    key: String,
    /// Pipelines sent and not answered yet, with their sizes.
    pending: VecDeque<(JoinHandle<redis::RedisResult<()>>, u64)>,
    /// Lines acknowledged.
    acked: u64,
}

impl RedisWriter {
    /// A writer of `run` on `conn`.
    pub(crate) fn new(conn: MultiplexedConnection, run: &str) -> Self {
        Self {
            conn,
            key: key(run),
            pending: VecDeque::new(),
            acked: 0,
        }
    }

    /// Sends the lines as one pipeline of `XADD key * l <line>`.
    pub(crate) async fn send(&mut self, lines: Vec<String>) -> Result<()> {
        let mut pipe = redis::pipe();
        let count = lines.len() as u64;
        for line in lines {
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("*")
                .arg("l")
                .arg(line)
                .ignore();
        }
        let mut conn = self.conn.clone();
        let call = tokio::spawn(async move { pipe.query_async::<()>(&mut conn).await });
        self.pending.push_back((call, count));
        while self.pending.len() >= PIPELINES_IN_FLIGHT {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    /// Waits for every pipeline.
    pub(crate) async fn finish(mut self) -> Result<u64> {
        while !self.pending.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(self.acked)
    }

    /// Waits for the oldest pipeline.
    async fn wait_oldest(&mut self) -> Result<()> {
        if let Some((call, count)) = self.pending.pop_front() {
            call.await
                .context("a pipeline task failed")?
                .context("XADD failed")?;
            self.acked += count;
        }
        Ok(())
    }
}

/// `XREAD BLOCK` from the last id read.
#[derive(Debug)]
pub(crate) struct RedisFollower {
    /// A connection only this follower uses.
    conn: MultiplexedConnection,
    /// The stream key.
    key: String,
    /// The id of the last entry read.
    last_id: String,
}

impl RedisFollower {
    /// The next entries, waiting at most a second.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Delivered>>> {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(&self.last_id)
            .query_async(&mut self.conn)
            .await
            .context("XREAD failed")?;
        let mut batch = Vec::new();
        for (id, text) in stream_entries(reply)? {
            self.last_id = id;
            batch.push(Delivered { seq: 0, text });
        }
        Ok(Some(batch))
    }
}

/// The `(id, line)` pairs of an `XREAD` reply on one key.
fn stream_entries(reply: Value) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = || BenchError::Failed("an XREAD reply of an unexpected shape".to_owned());
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(key, entries)| Value::Array(vec![key, entries]))
            .collect(),
        _ => return Err(bad()),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            return Err(bad());
        };
        let Some(Value::Array(entries)) = parts.pop() else {
            return Err(bad());
        };
        for entry in entries {
            out.push(match entry {
                Value::Array(mut fields) if fields.len() == 2 => {
                    let values = fields.pop().expect("two fields");
                    let id = fields.pop().expect("two fields");
                    match (id, values) {
                        (Value::BulkString(id), Value::Array(mut values)) if values.len() == 2 => {
                            match values.pop().expect("two values") {
                                Value::BulkString(text) => {
                                    (String::from_utf8_lossy(&id).into_owned(), text)
                                }
                                _ => return Err(bad()),
                            }
                        }
                        _ => return Err(bad()),
                    }
                }
                _ => return Err(bad()),
            });
        }
    }
    Ok(out)
}
