//! [`Client`]: typed calls over the generated stubs, and the doors to the
//! worker handle and the follower stream.
//!
//! A client made from [`ConnectOptions`] with several servers moves to the
//! next one when its server fails (see the `failover` module). Its unary
//! calls that only read, or that the server makes idempotent
//! (`prepare_run`), are sent again on the next server after a failure of
//! the server; see [`Client::update_run_state`] and
//! [`Client::collect_runs`] for the two that change things.

use std::{future::Future, time::Duration};

use crate::{
    ClientError, ConnectOptions, Follow, FollowOptions, LoggingClient, NewRun, RunKey, RunWriter,
    SpoolOptions, WriterOptions,
    error::is_server_failure,
    failover::{Current, Link},
    pb,
};

/// A connection to `baa-logd` with typed calls. Cloning it is cheap and
/// shares the connection.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), baa_logging_client::ClientError> {
/// use baa_logging_client::{Client, RunKey};
///
/// let client = Client::connect("http://127.0.0.1:50051").await?;
/// let run = client.get_run(&RunKey::new("build", "run-1")).await?;
/// println!("{:?}", run.state);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    /// The connection, and the other servers to move to.
    link: Link,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this task's runs.
    pub task_id: Option<String>,
    /// Only runs in one of these statuses; empty: any.
    pub statuses: Vec<pb::RunStatus>,
    /// At most this many runs a page; 0: the server's default.
    pub page_size: u32,
    /// The page after the one that returned this token.
    pub page_token: String,
}

/// What a retention pass deletes, for [`Client::collect_runs`]. A limit
/// left unset is the server's configured one, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct CollectOptions {
    /// Delete nothing; only list what would be deleted.
    pub dry_run: bool,
    /// Delete terminal runs that finished longer ago than this.
    pub max_age: Option<Duration>,
    /// While all runs take more bytes than this, delete the oldest
    /// terminal runs.
    pub max_bytes: Option<u64>,
}

impl Client {
    /// Connects to `address` with the default [`ConnectOptions`]; several
    /// servers separated by commas are tried in order, and the client
    /// moves between them as [`Client::connect_with`] says.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidAddress`], [`ClientError::Connect`] or, for
    /// several servers, [`ClientError::Unreachable`].
    pub async fn connect(address: impl Into<String>) -> Result<Self, ClientError> {
        Self::connect_with(&ConnectOptions::new(address)).await
    }

    /// Connects with `options` (see [`ConnectOptions::connect`]). With
    /// several servers, the client and every writer and follower it makes
    /// move to the next server that answers when theirs fails, and resume
    /// there from their cursors.
    ///
    /// # Errors
    ///
    /// As for [`ConnectOptions::connect`].
    pub async fn connect_with(options: &ConnectOptions) -> Result<Self, ClientError> {
        let (index, stub) = options.connect_from(options.preferred()).await?;
        Ok(Self {
            link: Link::over(options.clone(), index, stub),
        })
    }

    /// A client that connects on its first request (see
    /// [`ConnectOptions::connect_lazy`]), and moves between several
    /// servers as one made with [`Client::connect_with`] does.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidAddress`] or [`ClientError::Credentials`].
    pub fn connect_lazy_with(options: &ConnectOptions) -> Result<Self, ClientError> {
        let (index, stub) = options.connect_lazy_at(options.preferred())?;
        Ok(Self {
            link: Link::over(options.clone(), index, stub),
        })
    }

    /// Wraps a generated client. It stays on its one connection: to move
    /// between servers, make the client with [`Client::connect_with`].
    pub fn from_stub(stub: LoggingClient) -> Self {
        Self {
            link: Link::fixed(stub),
        }
    }

    /// The generated client over the current connection, for calls this
    /// type does not wrap.
    pub fn stub(&self) -> LoggingClient {
        self.link.stub()
    }

    /// The link, for the writers and followers this client makes.
    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    /// Makes a call that may be sent twice: after a failure of the server,
    /// sends it again on the next one, once per other server.
    async fn repeatable<T, F, Fut>(&self, mut call: F) -> Result<T, tonic::Status>
    where
        F: FnMut(LoggingClient) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut current = self.link.current();
        let mut left = self.link.others();
        loop {
            match call(current.stub.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if left > 0 && is_server_failure(&status) => {
                    left -= 1;
                    current = self.moved(&current, &status).await.ok_or(status)?;
                }
                Err(status) => return Err(status),
            }
        }
    }

    /// After a failure of the server behind `seen`: the connection to the
    /// next server, or `None` when the link could not move.
    async fn moved(&self, seen: &Current, status: &tonic::Status) -> Option<Current> {
        let next = self.link.fail_over(seen, status).await;
        (!next.same_as(seen)).then_some(next)
    }

    /// The server's constants and limits.
    ///
    /// # Errors
    ///
    /// The server's answer, as [`ClientError::Status`].
    pub async fn server_info(&self) -> Result<pb::GetServerInfoResponse, ClientError> {
        Ok(self
            .repeatable(|mut stub| async move {
                stub.get_server_info(pb::GetServerInfoRequest {}).await
            })
            .await?)
    }

    /// Prepares a run, or returns it as it is when it was prepared before
    /// with the same metadata.
    ///
    /// # Errors
    ///
    /// `ALREADY_EXISTS` when the run exists with other metadata,
    /// `INVALID_ARGUMENT` for bad ids or times.
    pub async fn prepare_run(&self, run: NewRun) -> Result<pb::PrepareRunResponse, ClientError> {
        let request = run.into_request();
        Ok(self
            .repeatable(|mut stub| {
                let request = request.clone();
                async move { stub.prepare_run(request).await }
            })
            .await?)
    }

    /// A run's metadata, state, log summary and paths.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` for an unknown run.
    pub async fn get_run(&self, key: &RunKey) -> Result<pb::Run, ClientError> {
        let request = pb::GetRunRequest {
            task_id: key.task_id.clone(),
            run_id: key.run_id.clone(),
        };
        self.repeatable(|mut stub| {
            let request = request.clone();
            async move { stub.get_run(request).await }
        })
        .await?
        .run
        .ok_or_else(|| tonic::Status::internal("the reply holds no run").into())
    }

    /// One page of runs, newest first.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` for a bad page token.
    pub async fn list_runs(&self, filter: RunFilter) -> Result<pb::ListRunsResponse, ClientError> {
        let request = pb::ListRunsRequest {
            task_id: filter.task_id.unwrap_or_default(),
            statuses: filter
                .statuses
                .iter()
                .map(|status| *status as i32)
                .collect(),
            page_size: filter.page_size,
            page_token: filter.page_token,
        };
        Ok(self
            .repeatable(|mut stub| {
                let request = request.clone();
                async move { stub.list_runs(request).await }
            })
            .await?)
    }

    /// Applies a state patch and returns the new state.
    ///
    /// After a failure of the server, the patch is sent again on the next
    /// server, as the first may have applied it before it failed. Sending
    /// it twice is not harmless in general: the server refuses a second
    /// final status with `FAILED_PRECONDITION` (a terminal run stays as it
    /// is), and a second `checkpoint_seq` too. So when the repeat is
    /// refused with `FAILED_PRECONDITION`, the run's state is read back,
    /// and one that already holds everything the patch sets (status, exit
    /// code, summary, checkpoint) is the answer: the first send went
    /// through. Otherwise the refusal stands.
    ///
    /// # Errors
    ///
    /// `FAILED_PRECONDITION` for a move the status rules forbid.
    pub async fn update_run_state(
        &self,
        key: &RunKey,
        patch: pb::RunStatePatch,
    ) -> Result<pb::RunStateSnapshot, ClientError> {
        let request = pb::UpdateRunStateRequest {
            task_id: key.task_id.clone(),
            run_id: key.run_id.clone(),
            writer_id: String::new(),
            patch: Some(patch.clone()),
        };
        let mut current = self.link.current();
        let mut left = self.link.others();
        let mut repeated = false;
        loop {
            let status = match current.stub.clone().update_run_state(request.clone()).await {
                Ok(response) => {
                    return response
                        .into_inner()
                        .state
                        .ok_or_else(|| tonic::Status::internal("the reply holds no state").into());
                }
                Err(status) => status,
            };
            if repeated && status.code() == tonic::Code::FailedPrecondition {
                let state = self.get_run(key).await?.state;
                if let Some(state) = state.filter(|state| holds(state, &patch)) {
                    return Ok(state);
                }
            }
            if left == 0 || !is_server_failure(&status) {
                return Err(status.into());
            }
            left -= 1;
            current = self.moved(&current, &status).await.ok_or(status)?;
            repeated = true;
        }
    }

    /// Runs a retention pass now: deletes the terminal runs that `options`
    /// (over the server's configured policy) makes due, oldest first, never
    /// one with a stream open on it, and returns them. With
    /// `options.dry_run`, deletes nothing and returns what it would delete.
    /// Needs a token with the `admin` scope when the server checks tokens.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: baa_logging_client::Client) -> Result<(), baa_logging_client::ClientError> {
    /// use std::time::Duration;
    ///
    /// use baa_logging_client::CollectOptions;
    ///
    /// let month = Duration::from_secs(30 * 86_400);
    /// let due = client
    ///     .collect_runs(CollectOptions { dry_run: true, max_age: Some(month), max_bytes: None })
    ///     .await?;
    /// for run in due.runs {
    ///     println!("{}/{}: {} bytes", run.task_id, run.run_id, run.bytes);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A dry run is sent again on the next server after a failure of the
    /// server; a real pass is not (a second pass may delete more, and its
    /// answer would not be the first's): the error is returned, and the
    /// client's next call goes to the next server.
    ///
    /// # Errors
    ///
    /// `FAILED_PRECONDITION` when neither `options` nor the server sets a
    /// limit; `PERMISSION_DENIED` without the `admin` scope.
    pub async fn collect_runs(
        &self,
        options: CollectOptions,
    ) -> Result<pb::CollectRunsResponse, ClientError> {
        let max_age = options
            .max_age
            .map(|age| {
                prost_types::Duration::try_from(age).map_err(|err| ClientError::InvalidInput {
                    what: "max_age",
                    reason: err.to_string(),
                })
            })
            .transpose()?;
        let request = pb::CollectRunsRequest {
            dry_run: options.dry_run,
            max_age,
            max_bytes: options.max_bytes,
        };
        if options.dry_run {
            return Ok(self
                .repeatable(|mut stub| async move { stub.collect_runs(request).await })
                .await?);
        }
        let current = self.link.current();
        match current.stub.clone().collect_runs(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => {
                self.link.fail_over(&current, &status).await;
                Err(status.into())
            }
        }
    }

    /// Prepares `run` (see [`Client::prepare_run`]) and returns a writer
    /// on it.
    ///
    /// # Errors
    ///
    /// As for [`Client::prepare_run`] and [`Client::writer`].
    pub async fn prepare_writer(
        &self,
        run: NewRun,
        options: WriterOptions,
    ) -> Result<RunWriter, ClientError> {
        let key = run.key();
        // The metadata is masked with the writer's secrets too.
        let masker = crate::writer::SharedMasker::new(options.secrets.clone());
        let request = crate::writer::mask_prepare(&masker, run.into_request());
        self.repeatable(|mut stub| {
            let request = request.clone();
            async move { stub.prepare_run(request).await }
        })
        .await?;
        self.writer(key, options).await
    }

    /// A writer on an existing run. With the writer id of an earlier
    /// writer, it goes on after the last item the run holds from it.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` for an unknown run, `INVALID_ARGUMENT` for a bad writer
    /// id; while the server is away, it waits as its retry policy says.
    pub async fn writer(
        &self,
        key: RunKey,
        options: WriterOptions,
    ) -> Result<RunWriter, ClientError> {
        RunWriter::attach(self.link.clone(), key, options).await
    }

    /// A spooled writer, for a worker that must never wait for the server:
    /// everything it appends goes through a local file at `spool.path`
    /// first (see [`SpoolOptions`]), and its session delivers the file
    /// whenever the server answers, exactly once.
    ///
    /// With `prepare`, the run is new: it is prepared on the server's first
    /// answer, and nothing is asked now, so this works with no server at
    /// all; the writer's id must then be new to the run (the default).
    /// Without, `key` exists, and the server is asked now where this
    /// writer's items go on.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidInput`] when the spool cannot be created; for
    /// an existing run, as for [`Client::writer`].
    pub async fn spooled_writer(
        &self,
        key: RunKey,
        prepare: Option<NewRun>,
        options: WriterOptions,
        spool: &SpoolOptions,
    ) -> Result<RunWriter, ClientError> {
        let after = match (&prepare, &options.writer_id) {
            (None, Some(writer_id)) => {
                let request = pb::GetWriterCursorRequest {
                    task_id: key.task_id.clone(),
                    run_id: key.run_id.clone(),
                    writer_id: writer_id.clone(),
                };
                self.repeatable(|mut stub| {
                    let request = request.clone();
                    async move { stub.get_writer_cursor(request).await }
                })
                .await?
                .last_writer_seq
            }
            // A fresh writer id has written nothing yet.
            _ => 0,
        };
        RunWriter::spooled(self.link.clone(), key, prepare, options, spool, after)
    }

    /// A spooled writer over a spool another process left (a worker that
    /// gave up waiting, or died): it delivers what the file holds that the
    /// run does not, and applies its state changes; see
    /// [`RunWriter::close_within`].
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidInput`] when the file is not a spool.
    pub fn resume_spool(
        &self,
        path: &std::path::Path,
        options: WriterOptions,
    ) -> Result<RunWriter, ClientError> {
        RunWriter::resume(self.link.clone(), path, options)
    }

    /// Follows a run: its history from `options.from_seq`, then live
    /// entries, until the run ends.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: baa_logging_client::Client) -> Result<(), baa_logging_client::ClientError> {
    /// use baa_logging_client::{FollowEvent, FollowOptions, RunKey};
    /// use futures::StreamExt;
    ///
    /// let mut events = client.follow(RunKey::new("build", "run-1"), FollowOptions::default());
    /// while let Some(event) = events.next().await {
    ///     match event? {
    ///         FollowEvent::Stdout(chunk) => print!("{}", chunk.text),
    ///         FollowEvent::Stderr(chunk) => eprint!("{}", chunk.text),
    ///         FollowEvent::Lifecycle(entry) => println!("{}", entry.rendered_line),
    ///         FollowEvent::State(state) => println!("state: {:?}", state.status()),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn follow(&self, key: RunKey, options: FollowOptions) -> Follow {
        Follow::start(self.link.clone(), key, options)
    }

    /// Searches runs' output: the responses as the server finds matches.
    /// A search that cannot start for a failure of the server starts again
    /// on the next one; one that breaks later is the caller's to repeat.
    /// With a `timeout`, the server stops the search then, with
    /// `DEADLINE_EXCEEDED` after the matches found.
    ///
    /// # Errors
    ///
    /// `INVALID_ARGUMENT` for a bad pattern, `NOT_FOUND` for a named run
    /// that does not exist.
    pub async fn search(
        &self,
        request: pb::SearchRunsRequest,
        timeout: Option<Duration>,
    ) -> Result<tonic::Streaming<pb::SearchRunsResponse>, ClientError> {
        Ok(self
            .repeatable(|mut stub| {
                let mut request = tonic::Request::new(request.clone());
                if let Some(timeout) = timeout {
                    request.set_timeout(timeout);
                }
                async move { stub.search_runs(request).await }
            })
            .await?)
    }
}

/// Whether `state` holds everything `patch` sets (the time of a final
/// status aside, which the server may have set itself).
fn holds(state: &pb::RunStateSnapshot, patch: &pb::RunStatePatch) -> bool {
    patch.status.is_none_or(|status| status == state.status)
        && patch
            .exit_code
            .is_none_or(|code| Some(code) == state.exit_code)
        && patch
            .summary
            .as_ref()
            .is_none_or(|summary| Some(summary) == state.summary.as_ref())
        && patch
            .checkpoint_seq
            .is_none_or(|seq| seq == state.checkpoint_seq)
}
