//! A fault-injecting HTTP proxy between `aws-sdk-s3` and the local S3 server, on loopback.
//! Each request is either forwarded unchanged (the SDK's signature still holds: the `Host`
//! header is kept) or answered with the first programmed [`Fault`] whose rule matches. The
//! proxy lives on the test's runtime and stops with it; a hung answer is bounded too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// What the proxy does instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An S3 error document with this HTTP status and error code (`503`, `SlowDown`).
    Status(u16, &'static str),
    /// Reads the first part of the request body, then drops the connection unanswered.
    DropMidBody,
    /// Never answers (the proxy gives up after two minutes; the client should long before).
    Hang,
    /// Forwards the request, then drops the connection after this many bytes of the answer's
    /// body (a read that fails midway).
    CutAnswerAfter(usize),
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// The path, `/bucket/key` (path-style addressing).
    pub path: String,
    pub fault: Option<Fault>,
    /// For [`Fault::DropMidBody`]: the body bytes read before the drop, and the length the
    /// request announced.
    pub body_read: Option<(usize, u64)>,
}

struct Rule {
    method: Method,
    path_contains: String,
    fault: Fault,
    /// How many matching requests to forward before this rule faults any.
    skip: usize,
    /// How many more requests this rule faults; `None` for all of them.
    left: Option<usize>,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

type Body = Either<Incoming, Either<Full<Bytes>, Cut>>;

/// An upstream answer's body passed through until `left` bytes have gone, then an error, which
/// makes hyper drop the connection mid-body.
struct Cut {
    inner: Incoming,
    left: usize,
}

impl hyper::body::Body for Cut {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if self.left == 0 {
            return Poll::Ready(Some(Err("cut mid-answer by the test proxy".into())));
        }
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let Ok(mut data) = frame.into_data() else {
                    return Poll::Ready(Some(Err("the test proxy cut a trailer".into())));
                };
                let keep = data.len().min(self.left);
                self.left -= keep;
                Poll::Ready(Some(Ok(hyper::body::Frame::data(data.split_to(keep)))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The proxy's address and its programme.
#[derive(Clone)]
pub struct Proxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (`http://host:port`) on a fresh loopback port.
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            endpoint: format!("http://{}", listener.local_addr().unwrap()),
            state: Arc::default(),
        };
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build_http();
        let upstream: Arc<str> = upstream.into();
        let state = proxy.state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (client, upstream, state) = (client.clone(), upstream.clone(), state.clone());
                let service = hyper::service::service_fn(move |request| {
                    answer(request, client.clone(), upstream.clone(), state.clone())
                });
                tokio::spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        proxy
    }

    /// Faults the next `times` requests (`None`: every request) whose method is `method` and
    /// whose path contains `path_contains`. Rules are tried in the order they were added.
    pub fn fault(&self, method: Method, path_contains: &str, fault: Fault, times: Option<usize>) {
        self.fault_after(method, path_contains, 0, fault, times);
    }

    /// As [`Proxy::fault`], after forwarding the first `skip` matching requests (to fault a
    /// second read of the same object, say).
    pub fn fault_after(
        &self,
        method: Method,
        path_contains: &str,
        skip: usize,
        fault: Fault,
        times: Option<usize>,
    ) {
        self.state.lock().unwrap().rules.push(Rule {
            method,
            path_contains: path_contains.into(),
            fault,
            skip,
            left: times,
        });
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The requests with `method` whose path contains `path_contains`, and how many of them
    /// were faulted.
    pub fn count(&self, method: Method, path_contains: &str) -> (usize, usize) {
        let seen = self.seen();
        let matching = seen
            .iter()
            .filter(|s| s.method == method && s.path.contains(path_contains));
        let faulted = matching.clone().filter(|s| s.fault.is_some()).count();
        (matching.count(), faulted)
    }
}

/// Records `request`, then applies the first matching rule or forwards it.
async fn answer(
    request: Request<Incoming>,
    client: Client<HttpConnector, Incoming>,
    upstream: Arc<str>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    let path = request.uri().path().to_owned();
    let (index, fault) = {
        let mut state = state.lock().unwrap();
        let fault = state
            .rules
            .iter_mut()
            .filter(|r| {
                r.method == request.method() && path.contains(&r.path_contains) && r.left != Some(0)
            })
            .find_map(|rule| {
                if rule.skip > 0 {
                    rule.skip -= 1;
                    return None;
                }
                rule.left = rule.left.map(|n| n - 1);
                Some(rule.fault)
            });
        state.seen.push(Seen {
            method: request.method().clone(),
            path,
            fault,
            body_read: None,
        });
        (state.seen.len() - 1, fault)
    };
    let forward = |request: Request<Incoming>| {
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{upstream}{path_and_query}").parse();
        async move {
            parts.uri = uri?;
            let response = client.request(Request::from_parts(parts, body)).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(response)
        }
    };
    match fault {
        None => Ok(forward(request).await?.map(Either::Left)),
        Some(Fault::CutAnswerAfter(bytes)) => Ok(forward(request)
            .await?
            .map(|inner| Either::Right(Either::Right(Cut { inner, left: bytes })))),
        Some(Fault::Status(status, code)) => {
            let document = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>"
            );
            Ok(Response::builder()
                .status(StatusCode::from_u16(status)?)
                .header("content-type", "application/xml")
                .body(Either::Right(Either::Left(Full::new(Bytes::from(
                    document,
                )))))?)
        }
        Some(Fault::DropMidBody) => {
            let announced = request
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            let mut body = request.into_body();
            let read = match body.frame().await {
                Some(Ok(frame)) => frame.data_ref().map_or(0, Bytes::len),
                _ => 0,
            };
            state.lock().unwrap().seen[index].body_read = Some((read, announced));
            // An error from the service makes hyper close the connection with no answer.
            Err("dropped mid-body by the test proxy".into())
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            Err("the test proxy stopped hanging".into())
        }
    }
}
