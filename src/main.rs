use clap::Parser;

use backprop::config::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour codes only for a terminal: a log file or a collector gets plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if cli.log_format == "json" {
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        logs.init();
    }
    let result = match cli.command {
        Some(Command::Migrate(db)) => backprop::run::migrate(&db).await,
        Some(Command::Keys(k)) => backprop::run::keys(k),
        Some(Command::Healthcheck(h)) => backprop::run::healthcheck(h.listen).await,
        Some(Command::Serve(args)) => backprop::run::serve(*args).await,
        Some(Command::Worker(args)) => backprop::run::worker(args).await,
        Some(Command::Backup(args)) => backprop::run::backup(args).await,
        Some(Command::Restore(args)) => backprop::run::restore(args).await,
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
