//! The one application-state type every function uses: the platform plus a context's own
//! extras (`X`), cheap to clone, built once per container.

use std::{ops::Deref, sync::Arc};

use crate::{
    authn::{Authenticator, HasAuthenticator},
    aws::Clients,
    clock::Clock,
    config::PlatformConfig,
    platform::Platform,
};

/// What a constructor of state can fail with (configuration, the secrets' KMS call).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The platform and a context's extras.
pub struct App<X> {
    pub platform: Platform,
    pub ext: X,
}

/// Shared state of a function's handlers: `Deref`s to the [`Platform`], and
/// [`AppState::ext`] gives the context's extras.
pub struct AppState<X = ()>(Arc<App<X>>);

impl<X> Clone for AppState<X> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<X> Deref for AppState<X> {
    type Target = Platform;
    fn deref(&self) -> &Platform {
        &self.0.platform
    }
}

impl<X> AppState<X> {
    pub fn new(platform: Platform, ext: X) -> Self {
        Self(Arc::new(App { platform, ext }))
    }

    /// Opens the platform (one KMS call) and adds the extras.
    pub async fn open(
        clients: &Clients,
        cfg: &PlatformConfig,
        clock: Arc<dyn Clock>,
        ext: X,
    ) -> Result<Self, BoxError> {
        Ok(Self::new(Platform::new(clients, cfg, clock).await?, ext))
    }

    /// The context's own extras.
    pub fn ext(&self) -> &X {
        &self.0.ext
    }

    pub fn platform(&self) -> &Platform {
        &self.0.platform
    }
}

impl<X: Default> AppState<X> {
    /// The platform and the extras' defaults, from the environment.
    pub async fn from_env() -> Result<Self, BoxError> {
        let cfg = PlatformConfig::from_env()?;
        let clients = Clients::from_env().await;
        Self::open(
            &clients,
            &cfg,
            Arc::new(crate::clock::SystemClock),
            X::default(),
        )
        .await
    }
}

impl<X: Send + Sync> HasAuthenticator for AppState<X> {
    fn authenticator(&self) -> &Authenticator {
        &self.0.platform.authn
    }
}

/// Runs futures concurrently on this task and returns their outputs in order.
pub async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::with_capacity(futs.len());
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
