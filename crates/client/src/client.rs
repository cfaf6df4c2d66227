//! [`Client`]: typed calls over the generated stubs, and the doors to the
//! worker handle and the follower stream.

use std::time::Duration;

use crate::{
    ClientError, ConnectOptions, Follow, FollowOptions, LoggingClient, NewRun, RunKey, RunWriter,
    SpoolOptions, WriterOptions, pb,
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
    /// The generated client.
    stub: LoggingClient,
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
    /// Connects to `address` with the default [`ConnectOptions`].
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidAddress`] or [`ClientError::Connect`].
    pub async fn connect(address: impl Into<String>) -> Result<Self, ClientError> {
        Ok(Self::from_stub(
            ConnectOptions::new(address).connect().await?,
        ))
    }

    /// Wraps a generated client.
    pub fn from_stub(stub: LoggingClient) -> Self {
        Self { stub }
    }

    /// The generated client, for calls this type does not wrap.
    pub fn stub(&self) -> LoggingClient {
        self.stub.clone()
    }

    /// The server's constants and limits.
    ///
    /// # Errors
    ///
    /// The server's answer, as [`ClientError::Status`].
    pub async fn server_info(&self) -> Result<pb::GetServerInfoResponse, ClientError> {
        Ok(self
            .stub()
            .get_server_info(pb::GetServerInfoRequest {})
            .await?
            .into_inner())
    }

    /// Prepares a run, or returns it as it is when it was prepared before
    /// with the same metadata.
    ///
    /// # Errors
    ///
    /// `ALREADY_EXISTS` when the run exists with other metadata,
    /// `INVALID_ARGUMENT` for bad ids or times.
    pub async fn prepare_run(&self, run: NewRun) -> Result<pb::PrepareRunResponse, ClientError> {
        Ok(self
            .stub()
            .prepare_run(run.into_request())
            .await?
            .into_inner())
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
        self.stub()
            .get_run(request)
            .await?
            .into_inner()
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
        Ok(self.stub().list_runs(request).await?.into_inner())
    }

    /// Applies a state patch and returns the new state.
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
            patch: Some(patch),
        };
        self.stub()
            .update_run_state(request)
            .await?
            .into_inner()
            .state
            .ok_or_else(|| tonic::Status::internal("the reply holds no state").into())
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
        Ok(self.stub().collect_runs(request).await?.into_inner())
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
        self.stub().prepare_run(request).await?;
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
        RunWriter::attach(self.stub(), key, options).await
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
                self.stub()
                    .get_writer_cursor(pb::GetWriterCursorRequest {
                        task_id: key.task_id.clone(),
                        run_id: key.run_id.clone(),
                        writer_id: writer_id.clone(),
                    })
                    .await?
                    .into_inner()
                    .last_writer_seq
            }
            // A fresh writer id has written nothing yet.
            _ => 0,
        };
        RunWriter::spooled(self.stub(), key, prepare, options, spool, after)
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
        RunWriter::resume(self.stub(), path, options)
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
        Follow::start(self.stub(), key, options)
    }

    /// Searches runs' output: the responses as the server finds matches.
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
        let mut request = tonic::Request::new(request);
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        Ok(self.stub().search_runs(request).await?.into_inner())
    }
}
