//! Test step: opens a TCP connection through WASI, so the component imports `wasi:sockets`.
use whenever_step_sdk::prelude::*;

struct OpensSocket;

impl Step for OpensSocket {
    fn condition() -> Value {
        condition!({ openSocket: true })
    }
    fn content(data: &mut Value) -> Result<(), StepError> {
        let stream = std::net::TcpStream::connect("127.0.0.1:80").map_err(|e| e.to_string())?;
        set(
            data,
            "peer",
            stream.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
        );
        Ok(())
    }
}

export_step!(OpensSocket);
