use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use berth::cli::{ClientCommand, ClientOptions};
use berth::config::{Config, LogFormat};

#[derive(Parser)]
#[command(name = "berth", version, about = "A container image registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: ClientOptions,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve {
        /// Configuration file (TOML); see berth.example.toml.
        #[arg(long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:5000].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Data directory [default: ./berth-data].
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Copy an embedded installation to PostgreSQL and S3 (or any target
    /// configuration), verified.
    #[command(long_about = berth::migrate::LONG_ABOUT)]
    Migrate(berth::migrate::MigrateArgs),
    #[command(flatten)]
    Client(ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Client(command) => berth::cli::run(command, cli.client),
        Command::Migrate(args) => {
            let filter = std::env::var("BERTH_LOG").unwrap_or_else(|_| "warn,sqlx=error".into());
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_new(filter)
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init();
            berth::migrate::run(args, cli.client.json)
        }
        Command::Serve {
            config,
            listen,
            data,
        } => {
            let mut config = match Config::load(config.as_deref(), |k| std::env::var(k).ok()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("berth: configuration: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if let Some(data) = data {
                config.data_dir = data;
            }
            init_logging(&config);
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(berth::server::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "berth failed");
                    eprintln!("berth: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: escape codes in a log file or a collector
    // get in the way of every search.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
