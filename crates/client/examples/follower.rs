//! A follower: prints a run's history, then its live entries, until it
//! ends. Reconnects by itself if the server restarts.
//!
//! ```sh
//! cargo run -p baa-logging-client --example follower -- [SERVER] [TASK] [RUN]
//! ```

use baa_logging_client::{Client, ClientError, FollowEvent, FollowOptions, RunKey};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let task = args.next().unwrap_or_else(|| "example".into());
    let run = args.next().unwrap_or_else(|| "worker-1".into());

    let client = Client::connect(server).await?;
    let mut events = client.follow(RunKey::new(task, run), FollowOptions::default());
    while let Some(event) = events.next().await {
        match event? {
            FollowEvent::Lifecycle(entry) => println!("[{}] {}", entry.seq, entry.rendered_line),
            FollowEvent::Stdout(chunk) => print!("[{}] {}", chunk.seq, chunk.text),
            FollowEvent::Stderr(chunk) => eprint!("[{}] {}", chunk.seq, chunk.text),
            FollowEvent::State(state) => println!("state: {}", state.status().as_str_name()),
        }
    }
    println!("the run has ended");
    Ok(())
}
