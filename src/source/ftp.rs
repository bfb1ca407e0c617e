//! FTP catalogues (SPEC §7). One control connection serves a whole run: each file is
//! streamed by `RETR` straight into the parser (no copy on disk), and its transfer is
//! completed — the server's `226` read — only after the import of that file, because only
//! then do we know whether it may be deleted.
//!
//! The client is suppaftp, not the design card's async_ftp: async_ftp has had no release
//! since 2021, knows only PASV, has no timeouts and its TLS pulls rustls 0.20 with ring 0.16.
//! suppaftp is maintained, speaks EPSV and PASV, explicit FTPS on the rustls we already use,
//! and hands out transfers as tokio streams.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use suppaftp::tokio::{
    AsyncRustlsConnector, AsyncRustlsStream, ImplAsyncFtpStream, TransferStream,
};
use suppaftp::tokio_rustls::TlsConnector;
use suppaftp::tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, Status};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::{Body, Input, SourceError};
use crate::secret::Secret;

/// The `[ftp]` section of a pipeline, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The environment variable that holds the password (none: anonymous login). It is read
    /// only when connecting, so no pipeline value ever holds a secret.
    pub password_env: Option<String>,
    /// The password typed in the console, opened from its sealed copy when the pipeline was
    /// loaded; it takes the place of `password_env`.
    pub password: Option<Secret>,
    /// Explicit FTPS (`AUTH TLS`) on the control and the data connections.
    pub tls: bool,
    /// Passive (EPSV, falling back to PASV) or, when false, active (PORT) data connections.
    pub passive: bool,
    /// How long to wait for a connection, an answer or the next bytes of a transfer.
    pub timeout: Duration,
    /// Extra trust anchors (PEM) for a server whose certificate a private CA issued.
    pub ca_file: Option<PathBuf>,
}

impl FtpSettings {
    /// How reports name a file on this server: `ftp://host:port/path`, never with the user
    /// or the password.
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("ftp://{}:{}{slash}{path}", self.host, self.port)
    }
}

type Client = ImplAsyncFtpStream<AsyncRustlsStream>;
type Transfer = TransferStream<AsyncRustlsStream>;

/// A logged-in control connection.
pub struct FtpSession {
    client: Client,
    settings: Arc<FtpSettings>,
}

/// The transfer of a file being imported; it comes back when the parser lets go of it.
pub struct Pending {
    address: String,
    back: oneshot::Receiver<Returned>,
}

/// A transfer handed back, and whether the reader saw its end (EOF or a broken connection).
struct Returned {
    transfer: Transfer,
    ended: bool,
}

impl FtpSession {
    /// Connects, secures (when asked), logs in and switches to binary transfers.
    pub async fn connect(settings: Arc<FtpSettings>) -> Result<Self, SourceError> {
        // The secret first: a missing variable is a configuration error, whatever the network.
        let password = match (&settings.password, &settings.password_env) {
            (Some(password), _) => password.expose().to_owned(),
            (None, None) => String::new(),
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| SourceError::FtpPassword { var: var.clone() })?
            }
        };
        let server = format!("{}:{}", settings.host, settings.port);
        let fail = |message: String| SourceError::FtpConnect {
            server: server.clone(),
            message,
        };
        let limit = settings.timeout;
        let addr: SocketAddr = within(limit, tokio::net::lookup_host(server.as_str()))
            .await
            .map_err(|_| fail(format!("no answer from DNS within {} s", limit.as_secs())))?
            .map_err(|e| fail(format!("unknown host: {e}")))?
            .next()
            .ok_or_else(|| fail("the host name has no address".into()))?;
        let mut client = within(limit, Client::connect_timeout(addr, limit))
            .await
            .map_err(|_| fail(format!("no greeting within {} s", limit.as_secs())))?
            .map_err(|e| fail(e.to_string()))?;
        if settings.tls {
            let connector = tls_connector(&settings).map_err(|message| SourceError::FtpTls {
                server: server.clone(),
                message,
            })?;
            client = within(limit, client.into_secure(connector, &settings.host))
                .await
                .map_err(|_| fail(format!("no TLS handshake within {} s", limit.as_secs())))?
                .map_err(|e| SourceError::FtpTls {
                    server: server.clone(),
                    message: e.to_string(),
                })?;
        }
        let login = client.login(settings.user.as_str(), password.as_str());
        match within(limit, login).await {
            Err(_) => {
                return Err(fail(format!(
                    "no answer to login within {} s",
                    limit.as_secs()
                )));
            }
            Ok(Err(FtpError::UnexpectedResponse(r))) if r.status == Status::NotLoggedIn => {
                return Err(SourceError::FtpLogin {
                    server,
                    user: settings.user.clone(),
                    password_from: match (&settings.password, &settings.password_env) {
                        (Some(_), _) => "the password saved in the console".into(),
                        (None, Some(v)) => format!("the password in ${v}"),
                        (None, None) => "an anonymous login".into(),
                    },
                });
            }
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Ok(Ok(())) => {}
        }
        if settings.passive {
            client.set_mode(Mode::ExtendedPassive);
        } else {
            client = client.active_mode(limit);
        }
        let mut session = FtpSession { client, settings };
        session
            .command("TYPE I", |c| Box::pin(c.transfer_type(FileType::Binary)))
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(session)
    }

    /// The files of `folder` whose names match `pattern`, as full paths in name order.
    pub async fn list(
        &mut self,
        folder: &str,
        pattern: &glob::Pattern,
    ) -> Result<Vec<String>, SourceError> {
        let shown = self.settings.url(folder);
        let names = self
            .data_command(|c| {
                let folder = folder.to_owned();
                Box::pin(async move { c.nlst(Some(&folder)).await })
            })
            .await
            .map_err(|e| match e {
                FtpError::UnexpectedResponse(r) if r.status == Status::FileUnavailable => {
                    SourceError::FtpNoFile {
                        address: shown.clone(),
                    }
                }
                e => SourceError::FtpTransfer {
                    address: shown.clone(),
                    message: e.to_string(),
                },
            })?;
        let mut paths: Vec<String> = names
            .iter()
            .map(|n| n.trim_end_matches('\r'))
            .filter_map(|n| n.rsplit('/').next())
            .filter(|name| !name.is_empty() && pattern.matches(name))
            .map(|name| join(folder, name))
            .collect();
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// The size of `path` by `SIZE`; `None` where the server does not tell.
    pub async fn size(&mut self, path: &str) -> Result<Option<u64>, SourceError> {
        match within(self.settings.timeout, self.client.size(path)).await {
            Ok(Ok(size)) => Ok(Some(size as u64)),
            Ok(Err(FtpError::UnexpectedResponse(r))) if r.status == Status::FileUnavailable => {
                Err(SourceError::FtpNoFile {
                    address: self.settings.url(path),
                })
            }
            _ => Ok(None),
        }
    }

    /// Starts the download of `path`; the bytes flow while the pipeline reads them.
    pub async fn open(&mut self, path: &str) -> Result<(Input, Pending), SourceError> {
        let address = self.settings.url(path);
        let size = self.size(path).await?;
        let transfer = self
            .data_command(|c| {
                let path = path.to_owned();
                Box::pin(async move { c.retr_as_stream(path).await })
            })
            .await
            .map_err(|e| match e {
                FtpError::UnexpectedResponse(r) if r.status == Status::FileUnavailable => {
                    SourceError::FtpNoFile {
                        address: address.clone(),
                    }
                }
                e => SourceError::FtpTransfer {
                    address: address.clone(),
                    message: e.to_string(),
                },
            })?;
        let (tx, back) = oneshot::channel();
        let reader = Returning {
            transfer: Some(transfer),
            ended: false,
            back: Some(tx),
            stall: self.settings.timeout,
            deadline: Box::pin(tokio::time::sleep(self.settings.timeout)),
        };
        let input = Input {
            name: Arc::from(address.as_str()),
            size,
            body: Body::Stream(Box::new(reader)),
        };
        Ok((input, Pending { address, back }))
    }

    /// Reads the server's verdict on a transfer the pipeline has finished reading: a cut
    /// connection or a server-side failure shows here even when the bytes looked complete.
    /// A transfer abandoned mid-file (the import halted on a record) is only closed: its
    /// verdict would be about our hanging up, not about the file.
    pub async fn complete(&mut self, pending: Pending) -> Result<(), SourceError> {
        let fail = |message: String| SourceError::FtpTransfer {
            address: pending.address.clone(),
            message,
        };
        let Ok(Returned { transfer, ended }) = pending.back.await else {
            return Err(fail("the transfer was lost".into()));
        };
        if !ended {
            drop(transfer);
            return Ok(());
        }
        match within(self.settings.timeout, transfer.finish()).await {
            Err(_) => Err(fail(format!(
                "the server did not confirm the transfer within {} s",
                self.settings.timeout.as_secs()
            ))),
            Ok(Err(FtpError::UnexpectedResponse(r))) if r.status == Status::FileUnavailable => {
                Err(SourceError::FtpNoFile {
                    address: pending.address.clone(),
                })
            }
            Ok(Err(e)) => Err(fail(e.to_string())),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Deletes a file that was imported without error.
    pub async fn delete(&mut self, path: &str) -> Result<(), SourceError> {
        let path_owned = path.to_owned();
        self.command("DELE", |c| Box::pin(async move { c.rm(path_owned).await }))
            .await
            .map_err(|e| SourceError::FtpDelete {
                address: self.settings.url(path),
                message: e.to_string(),
            })
    }

    /// Says goodbye; a server that does not answer is simply left.
    pub async fn quit(mut self) {
        let _ = within(self.settings.timeout, self.client.quit()).await;
    }

    async fn command<T>(
        &mut self,
        what: &str,
        run: impl for<'c> FnOnce(&'c mut Client) -> BoxFuture<'c, T>,
    ) -> Result<T, FtpError> {
        within(self.settings.timeout, run(&mut self.client))
            .await
            .map_err(|_| timed_out(what, self.settings.timeout))?
    }

    /// A command with a data connection: servers that refuse EPSV (500/502) get PASV.
    async fn data_command<T>(
        &mut self,
        run: impl for<'c> Fn(&'c mut Client) -> BoxFuture<'c, T>,
    ) -> Result<T, FtpError> {
        let first = self.command("data command", &run).await;
        match first {
            Err(FtpError::UnexpectedResponse(r))
                if self.settings.passive
                    && matches!(r.status, Status::CommandNotImplemented | Status::BadCommand) =>
            {
                self.client.set_mode(Mode::Passive);
                self.client.set_passive_nat_workaround(true);
                self.command("data command", run).await
            }
            other => other,
        }
    }
}

type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, FtpError>> + Send + 'c>>;

async fn within<F: Future>(
    limit: Duration,
    f: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(limit, f).await
}

fn timed_out(what: &str, limit: Duration) -> FtpError {
    FtpError::ConnectionError(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer to {what} within {} s", limit.as_secs()),
    ))
}

fn join(folder: &str, name: &str) -> String {
    if folder.ends_with('/') {
        format!("{folder}{name}")
    } else {
        format!("{folder}/{name}")
    }
}

/// The system's trust anchors plus the pipeline's own CA file.
fn tls_connector(settings: &FtpSettings) -> Result<AsyncRustlsConnector, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &settings.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(AsyncRustlsConnector::from(TlsConnector::from(Arc::new(
        config,
    ))))
}

/// The reader the parser gets: fails a transfer that stalls longer than the timeout, and
/// hands the transfer back when dropped so that its completion reply can be read.
struct Returning {
    transfer: Option<Transfer>,
    ended: bool,
    back: Option<oneshot::Sender<Returned>>,
    stall: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl AsyncRead for Returning {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(transfer) = this.transfer.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let before = buf.filled().len();
        match Pin::new(transfer).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.ended |= result.is_err() || buf.filled().len() == before;
                let next = Instant::now() + this.stall;
                this.deadline.as_mut().reset(next);
                Poll::Ready(result)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.ended = true;
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no bytes from the FTP server for {} s",
                            this.stall.as_secs()
                        ),
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let (Some(transfer), Some(back)) = (self.transfer.take(), self.back.take()) {
            // The receiver is gone only when the run was abandoned; the transfer then just closes.
            let _ = back.send(Returned {
                transfer,
                ended: self.ended,
            });
        }
    }
}
