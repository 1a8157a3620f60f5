//! The stream wrapper: rewritten bytes come out whatever the reads' sizes, and refused
//! input fails every read from then on.

use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use super::rewrite::CLIENT_PREFACE;
use super::*;

#[tokio::test]
async fn reads_give_the_rewritten_bytes_and_writes_pass_through() {
    let (mut client, server) = duplex(64);
    let mut server = AuthorityFixStream::new(server);
    let mut request = CLIENT_PREFACE.to_vec();
    // HEADERS, stream 1: literal without indexing `:authority: a%2Fb` (name index 1).
    request.extend([
        0, 0, 7, 0x1, 0x4, 0, 0, 0, 1, 0x01, 5, b'a', b'%', b'2', b'F', b'b',
    ]);
    let mut expected = CLIENT_PREFACE.to_vec();
    let block = [&[0u8, 10][..], b":authority", &[9], b"localhost"].concat();
    expected.extend([0, 0, block.len() as u8, 0x1, 0x4, 0, 0, 0, 1]);
    expected.extend(&block);
    let writer = tokio::spawn(async move {
        for piece in request.chunks(5) {
            client.write_all(piece).await.unwrap();
        }
        let mut answer = [0; 4];
        client.read_exact(&mut answer).await.unwrap();
        answer
    });
    let mut got = vec![0; expected.len()];
    // Small reads: the rewritten output is handed out in pieces too.
    for piece in got.chunks_mut(7) {
        server.read_exact(piece).await.unwrap();
    }
    assert_eq!(got, expected);
    server.write_all(b"pong").await.unwrap();
    assert_eq!(&writer.await.unwrap(), b"pong");
}

#[tokio::test]
async fn refused_input_fails_the_read_and_every_later_one() {
    let (mut client, server) = duplex(64);
    let mut server = AuthorityFixStream::new(server);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0; 16];
    let error = server.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("preface"), "{error}");
    assert!(server.read(&mut buf).await.is_err());
}

#[tokio::test]
async fn end_of_stream_is_end_of_stream() {
    let (client, server) = duplex(64);
    let mut server = AuthorityFixStream::new(server);
    drop(client);
    let mut buf = [0; 16];
    assert_eq!(server.read(&mut buf).await.unwrap(), 0);
}
