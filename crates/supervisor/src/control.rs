//! The supervisor's side of its control socket (`DIR/run/supervisor.sock`, mode 0660, group
//! `palisade`). The protocol, its client and the server are in `palisade_control`
//! (`supervisor`, `server`); requests are answered by the supervisor's main loop.

use palisade_control::server;
use palisade_store::DataDir;
use tokio::sync::{mpsc, oneshot};

pub use palisade_control::supervisor::{
    ChildState, ChildStatus, HaPairAction, Request, Response, Status,
};

use crate::{Event, SupervisorError};

pub(crate) fn serve(
    data: &DataDir,
    events: mpsc::UnboundedSender<Event>,
) -> Result<tokio::task::JoinHandle<()>, SupervisorError> {
    let path = palisade_control::supervisor::socket_in(&data.run());
    let listener = server::bind(&path, 0o660)
        .map_err(|e| SupervisorError::Setup(format!("control socket: {e}")))?;
    let limits = server::Limits {
        max_request_bytes: palisade_control::supervisor::MAX_REQUEST_BYTES,
        ..server::Limits::default()
    };
    Ok(server::serve(listener, limits, move |req: Request| {
        let events = events.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            if events.send(Event::Control(req, tx)).is_err() {
                return Response::Error {
                    message: "supervisor stopping".into(),
                };
            }
            rx.await.unwrap_or(Response::Error {
                message: "supervisor stopping".into(),
            })
        }
    }))
}
