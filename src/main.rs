use clap::Parser;

use backprop::config::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Migrate(db)) => backprop::run::migrate(&db).await,
        Some(Command::Serve(args)) => backprop::run::serve(args).await,
        None => backprop::run::serve(cli.serve).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backprop: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
