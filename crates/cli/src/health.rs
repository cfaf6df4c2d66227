//! `baa-log health`: asks a server's standard gRPC health service
//! (`grpc.health.v1.Health/Check`) whether it serves, for container health
//! checks, probes and scripts.
//!
//! It prints the status as the health protocol names it (`SERVING`,
//! `NOT_SERVING`, ...) and exits 0 only for `SERVING`. baa-logd answers
//! `NOT_SERVING` while it shuts down and while its data directory cannot be
//! written, so a health check that passes means "appends would work now".
//! Like every subcommand it goes through [`ConnectOptions`], so `--server`,
//! `BAA_LOG_SERVER` and the token apply to it too. Given several servers,
//! it asks the first that accepts a connection (in the list's order): a
//! probe of one node gives it only its own address.

use std::time::Duration;

use baa_logging_client::{ClientError, ConnectOptions};
use clap::Args;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::Failure;

/// Arguments of `baa-log health`.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// The service to ask about: "" (the default) is the whole server;
    /// baa-logd also reports `baa.logging.v1.LoggingService`.
    #[arg(long, default_value = "")]
    service: String,
    /// How long connecting and answering may take in all, in seconds.
    ///
    /// Past that the check fails: health checks run often, and must not
    /// pile up behind a server that accepts connections but hangs.
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    timeout: Duration,
}

/// Asks the server's health service about `args.service`, prints the
/// status, and returns exit code 0 for `SERVING`, 1 for anything else.
///
/// An unknown service (the health service answers `NOT_FOUND`) prints
/// `SERVICE_UNKNOWN`, the protocol's name for it. A server that cannot be
/// reached, refuses the token or does not answer in time is a one-line
/// failure.
pub(crate) async fn health(
    options: &ConnectOptions,
    args: HealthArgs,
    explain: &impl Fn(ClientError) -> Failure,
) -> Result<u8, Failure> {
    let check = async {
        let mut client = HealthClient::new(options.channel().await?);
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: args.service.clone(),
        });
        // Also tell the server, so that it gives up on its side too.
        request.set_timeout(args.timeout);
        Ok::<_, ClientError>(client.check(request).await)
    };
    let answer = tokio::time::timeout(args.timeout, check)
        .await
        .map_err(|_| {
            Failure::new(format!(
                "baa-logd at {} did not answer the health check within {}s",
                options.addresses().join(","),
                args.timeout.as_secs_f64()
            ))
        })?
        .map_err(explain)?;
    let status = match answer {
        Ok(response) => response.into_inner().status(),
        Err(status) if status.code() == Code::NotFound => ServingStatus::ServiceUnknown,
        Err(status) => return Err(explain(ClientError::Status(status))),
    };
    println!("{}", status.as_str_name());
    Ok(if status == ServingStatus::Serving {
        0
    } else {
        1
    })
}

/// Parses a number of seconds, such as `5` or `0.5`, for clap.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| format!("`{text}` is not a positive number of seconds"))
}
