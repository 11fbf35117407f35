//! The `wasi:http` transport used inside the sandbox.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse,
    Method as WasiMethod, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use super::{HttpError, HttpErrorKind, Method, Request, Response};

/// Largest chunk read from the response body at once.
const READ_CHUNK: u64 = 64 * 1024;

pub(super) fn send(request: &Request) -> Result<Response, HttpError> {
    send_request(request).map_err(|error| error.naming_destination_of(request))
}

fn send_request(request: &Request) -> Result<Response, HttpError> {
    let uri: http::Uri = request
        .url
        .parse()
        .map_err(|e| invalid(format!("bad URL {:?}: {e}", request.url)))?;
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        _ => {
            return Err(invalid(format!(
                "URL {:?} must start with http:// or https://",
                request.url
            )));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| invalid(format!("URL {:?} has no host", request.url)))?
        .as_str();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());

    let mut header_list: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.as_bytes().to_vec()))
        .collect();
    // The body is complete, so say how long it is: without it the request
    // goes out chunked, which S3's PutObject refuses (411).
    if request.header_value("content-length").is_none()
        && (!request.body.is_empty() || matches!(request.method, Method::Post | Method::Put))
    {
        header_list.push((
            "content-length".to_owned(),
            request.body.len().to_string().into_bytes(),
        ));
    }
    let headers =
        Fields::from_list(&header_list).map_err(|e| invalid(format!("header rejected: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    outgoing
        .set_method(&wasi_method(request.method))
        .and_then(|()| outgoing.set_scheme(Some(&scheme)))
        .and_then(|()| outgoing.set_authority(Some(authority)))
        .and_then(|()| outgoing.set_path_with_query(Some(path)))
        .map_err(|()| invalid(format!("URL {:?} was refused by wasi:http", request.url)))?;

    let options = RequestOptions::new();
    // Hosts may not support every timeout; a refusal leaves the host default.
    let _ = options.set_connect_timeout(Some(nanos(request.connect_timeout)));
    let _ = options.set_first_byte_timeout(Some(nanos(request.timeout)));
    let _ = options.set_between_bytes_timeout(Some(nanos(request.timeout)));

    let body = outgoing
        .body()
        .map_err(|()| other("request body was already taken"))?;
    // Start the request before writing: the host streams the body as it
    // arrives, so writing first could wait on a body nobody reads yet.
    let pending = outgoing_handler::handle(outgoing, Some(options)).map_err(from_error_code)?;
    let written = match body.write() {
        Ok(stream) => {
            let written = write_all(&stream, &request.body);
            drop(stream);
            written
        }
        Err(()) => Err(other("request body stream unavailable")),
    };
    match written {
        Ok(()) => OutgoingBody::finish(body, None).map_err(from_error_code)?,
        // Dropping an unfinished body aborts the request, so the response
        // below resolves (with the reason) instead of waiting for the rest.
        Err(_) => drop(body),
    }
    // A refused or failed request closes the body stream early; the
    // response says why, which is the useful error, and a server may
    // answer (e.g. 413) before it read the whole body.
    let response = wait_for_response(&pending)?;
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| other("response body was already taken"))?;
    let body = {
        let stream = incoming
            .stream()
            .map_err(|()| other("response body stream unavailable"))?;
        read_all(&stream)?
    };
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn wait_for_response(pending: &FutureIncomingResponse) -> Result<IncomingResponse, HttpError> {
    loop {
        match pending.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(from_error_code(code)),
            Some(Err(())) => return Err(other("response was already taken")),
            None => pending.subscribe().block(),
        }
    }
}

fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), HttpError> {
    while !bytes.is_empty() {
        let permit = loop {
            match stream.check_write().map_err(stream_error)? {
                0 => stream.subscribe().block(),
                n => break n,
            }
        };
        let take = bytes
            .len()
            .min(usize::try_from(permit).unwrap_or(usize::MAX));
        stream.write(&bytes[..take]).map_err(stream_error)?;
        bytes = &bytes[take..];
    }
    stream.flush().map_err(stream_error)?;
    // check-write becomes ready again once the flush has completed.
    loop {
        stream.subscribe().block();
        if stream.check_write().map_err(stream_error)? > 0 {
            return Ok(());
        }
    }
}

fn read_all(stream: &InputStream) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(body),
            Err(e) => return Err(stream_error(e)),
        }
    }
}

fn stream_error(error: StreamError) -> HttpError {
    match error {
        StreamError::Closed => other("connection closed early"),
        StreamError::LastOperationFailed(e) => match wasip2::http::types::http_error_code(&e) {
            Some(code) => from_error_code(code),
            None => other(e.to_debug_string()),
        },
    }
}

fn wasi_method(method: Method) -> WasiMethod {
    match method {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Delete => WasiMethod::Delete,
        Method::Patch => WasiMethod::Patch,
    }
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn invalid(message: String) -> HttpError {
    HttpError::new(HttpErrorKind::InvalidRequest, message)
}

fn other(message: impl Into<String>) -> HttpError {
    HttpError::new(HttpErrorKind::Other, message)
}

fn from_error_code(code: ErrorCode) -> HttpError {
    let kind = match &code {
        ErrorCode::HttpRequestDenied => {
            return HttpError::new(
                HttpErrorKind::Denied,
                "the relay denied this request: the destination host is not in this plugin's allowed_hosts",
            );
        }
        ErrorCode::DnsTimeout | ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => {
            HttpErrorKind::Dns
        }
        ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionLimitReached
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpProhibited
        | ErrorCode::DestinationIpUnroutable => HttpErrorKind::Connect,
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => HttpErrorKind::Timeout,
        ErrorCode::TlsProtocolError
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsAlertReceived(_) => HttpErrorKind::Tls,
        ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_) => HttpErrorKind::InvalidRequest,
        ErrorCode::HttpProtocolError | ErrorCode::HttpResponseIncomplete => HttpErrorKind::Protocol,
        _ => HttpErrorKind::Other,
    };
    let message = match &code {
        ErrorCode::ConnectionRefused => "connection refused".to_owned(),
        ErrorCode::ConnectionTerminated => "connection closed by the peer".to_owned(),
        ErrorCode::ConnectionTimeout => "timed out connecting".to_owned(),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            "timed out waiting for the response".to_owned()
        }
        ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => "host name not found".to_owned(),
        ErrorCode::TlsCertificateError => "TLS certificate not trusted".to_owned(),
        other => format!("HTTP request failed: {other:?}"),
    };
    HttpError::new(kind, message)
}
