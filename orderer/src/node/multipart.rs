//! `multipart/form-data` bodies (RFC 7578), as Fabric's `osnadmin` uploads a config
//! block: finding one field, refusing malformed bodies without panicking.

/// The upload in a request body: form field `field` of a `multipart/form-data` body (as
/// `osnadmin` sends a config block), or the whole body when it is
/// `application/octet-stream`.
pub fn form_or_raw<'a>(
    content_type: &str,
    body: &'a [u8],
    field: &str,
) -> Result<&'a [u8], String> {
    let mut params = content_type.split(';').map(str::trim);
    let media_type = params.next().unwrap_or("").to_ascii_lowercase();
    match media_type.as_str() {
        "multipart/form-data" => {
            let boundary = params
                .find_map(|param| {
                    let (key, value) = param.split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("boundary")
                        .then(|| value.trim().trim_matches('"'))
                })
                .ok_or("multipart/form-data without a boundary")?;
            form_field(body, boundary, field)
        }
        "application/octet-stream" => Ok(body),
        "" => Err(format!(
            "no Content-Type: send it as multipart/form-data (field {field}) or \
             application/octet-stream"
        )),
        other => Err(format!(
            "unsupported Content-Type {other}: send it as multipart/form-data (field \
             {field}) or application/octet-stream"
        )),
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

/// The content of form field `field` in a `multipart/form-data` body (RFC 7578).
pub fn form_field<'a>(body: &'a [u8], boundary: &str, field: &str) -> Result<&'a [u8], String> {
    if boundary.is_empty() || boundary.len() > 70 {
        return Err("the multipart boundary must have 1 to 70 characters".into());
    }
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let next_delimiter = [b"\r\n--", boundary.as_bytes()].concat();
    let malformed = |what: &str| format!("malformed multipart body: {what}");
    // The first delimiter opens the body or follows a preamble line.
    let mut at = if body.starts_with(&delimiter) {
        delimiter.len()
    } else {
        find(body, &next_delimiter, 0).ok_or_else(|| malformed("no boundary"))?
            + next_delimiter.len()
    };
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Err(format!("the form has no field {field}"));
        }
        // Transport padding, then the line break that ends the delimiter line.
        let padding = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if !rest[padding..].starts_with(b"\r\n") {
            return Err(malformed("a boundary line does not end"));
        }
        let headers_start = at + padding + 2;
        let headers_end =
            find(body, b"\r\n\r\n", headers_start).ok_or_else(|| malformed("part headers"))?;
        let content_start = headers_end + 4;
        let content_end = find(body, &next_delimiter, content_start)
            .ok_or_else(|| malformed("a part does not end"))?;
        let content = &body[content_start..content_end];
        let headers = String::from_utf8_lossy(&body[headers_start..headers_end]);
        if part_name(&headers).as_deref() == Some(field) {
            return Ok(content);
        }
        at = content_end + next_delimiter.len();
    }
}

/// The `name` parameter of a part's `Content-Disposition: form-data` header.
fn part_name(headers: &str) -> Option<String> {
    let disposition = headers.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    })?;
    let mut params = disposition.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case("form-data") {
        return None;
    }
    params.find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("name")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multipart(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, content) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}.block\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body
    }

    #[test]
    fn the_config_block_part_is_found_among_others_whatever_its_bytes() {
        let boundary = "a1b2c3d4e5f6";
        // Binary content holding CRLFs, dashes and a near-miss of the boundary.
        let block: &[u8] = b"\x00\r\n--a1b2c3d4e5\r\n\r\n\xff--";
        let body = multipart(boundary, &[("other", b"x"), ("config-block", block)]);
        assert_eq!(form_field(&body, boundary, "config-block"), Ok(block));
        assert_eq!(form_field(&body, boundary, "other"), Ok(&b"x"[..]));
        assert!(
            form_field(&body, boundary, "missing")
                .unwrap_err()
                .contains("no field")
        );
        let empty = multipart(boundary, &[("config-block", b"")]);
        assert_eq!(form_field(&empty, boundary, "config-block"), Ok(&b""[..]));
        // A preamble before the first boundary is allowed.
        let preamble = [&b"preamble\r\n"[..], &body].concat();
        assert_eq!(form_field(&preamble, boundary, "config-block"), Ok(block));

        let content_type = format!("multipart/form-data; boundary=\"{boundary}\"");
        assert_eq!(form_or_raw(&content_type, &body, "config-block"), Ok(block));
        assert_eq!(
            form_or_raw("application/octet-stream", b"raw", "config-block"),
            Ok(&b"raw"[..])
        );
        assert!(form_or_raw("multipart/form-data", &body, "config-block").is_err());
        assert!(
            form_or_raw("text/plain", b"raw", "config-block")
                .unwrap_err()
                .contains("text/plain")
        );
        assert!(form_or_raw("", b"raw", "config-block").is_err());
    }

    #[test]
    fn malformed_multipart_bodies_are_refused_not_panicked_on() {
        let boundary = "xyz";
        let good = multipart(boundary, &[("config-block", b"block")]);
        // Every truncation and a few corruptions of a valid body.
        for end in 0..good.len() {
            let _ = form_field(&good[..end], boundary, "config-block");
        }
        for index in 0..good.len() {
            let mut bad = good.clone();
            bad[index] = b'-';
            let _ = form_field(&bad, boundary, "config-block");
            bad[index] = b'\r';
            let _ = form_field(&bad, boundary, "config-block");
        }
        assert!(form_field(b"--xyz", boundary, "config-block").is_err());
        assert!(form_field(b"--xyzjunk", boundary, "config-block").is_err());
        assert!(form_field(b"--xyz\r\nno headers end", boundary, "config-block").is_err());
        assert!(form_field(&good, "", "config-block").is_err());
        assert!(form_field(&good, &"b".repeat(71), "config-block").is_err());
    }

    #[test]
    fn part_names_come_from_the_content_disposition() {
        assert_eq!(
            part_name("Content-Type: x\r\ncontent-disposition: form-data; name=config-block"),
            Some("config-block".into())
        );
        assert_eq!(
            part_name("Content-Disposition: attachment; name=\"a\""),
            None
        );
        assert_eq!(part_name("Content-Type: x"), None);
    }
}
