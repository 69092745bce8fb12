//! Which client socket sent a datagram or opened a connection to the proxy: its socket cookie, by an exact
//! `NETLINK_SOCK_DIAG` lookup (`SOCK_DIAG_BY_FAMILY` with an `inet_diag_req_v2`) in the agent's own network
//! namespace.
//!
//! The dataplane records the original resolver per client socket cookie when it steers a socket, so the cookie is
//! the key the proxy needs. The kernel fills `idiag_cookie` of the reply from the same counter as `SO_COOKIE`.
//!
//! Orientation of the request's `inet_diag_sockid`, per protocol (kernel `udp_dump_one` / `inet_diag_find_one_icsk`):
//! - TCP: `idiag_src`/`idiag_sport` are the looked-up socket's own (local) address, `idiag_dst`/`idiag_dport` its
//!   peer. For the client socket of a connection the proxy accepted: src = the accepted stream's peer address,
//!   dst = its local address.
//! - UDP: swapped "for historical reasons": `idiag_src`/`idiag_sport` are the *remote* end (the proxy's address the
//!   datagram was sent to) and `idiag_dst`/`idiag_dport` the looked-up socket's own address (the datagram's source).
//!
//! One [`SockDiag`] holds one netlink socket and is meant to be owned by one task (a listener's receive or accept
//! loop): a lookup is one `sendto` and one `recv` that the kernel answers synchronously, a few microseconds.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states (u32), then the 48-byte `inet_diag_sockid`.
const REQ_V2_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_sockid`: sport, dport (be16), src, dst (4 x be32 each), if (u32), cookie (2 x u32).
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_msg`: family, state, timer, retrans, the sockid, then expires, rqueue, wqueue, uid, inode.
const DIAG_MSG_LEN: usize = 4 + SOCKID_LEN + 20;
/// Offset of `idiag_cookie` in `inet_diag_msg` (after the 4 one-byte fields and sport, dport, src, dst, if).
const DIAG_MSG_COOKIE_OFFSET: usize = 4 + 2 + 2 + 16 + 16 + 4;
/// `INET_DIAG_NOCOOKIE`: do not check the cookie of the found socket.
const INET_DIAG_NOCOOKIE: u32 = !0;
const SO_COOKIE: libc::c_int = 57;

/// Transport of the looked-up socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One `NETLINK_SOCK_DIAG` socket for exact socket lookups.
#[derive(Debug)]
pub struct SockDiag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    /// Opens the netlink socket (close-on-exec, with a 1 s receive timeout so a lost reply cannot wedge a loop).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: the option value points to a live timeval of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            seq: 0,
            buf: vec![0u8; 8192],
        })
    }

    /// The cookie of the client socket that sent `server` (the proxy's listening address the datagram arrived on)
    /// a datagram from `client` (the datagram's source). `Ok(None)`: no such socket (it closed already).
    pub fn udp_client_cookie(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
    ) -> io::Result<Option<u64>> {
        // udp_dump_one looks up the socket that would receive a datagram from src to dst: src = the proxy.
        self.lookup(Transport::Udp, server, client)
    }

    /// The cookie of the client socket of a TCP connection the proxy accepted: `client` is the accepted stream's
    /// peer address, `server` its local address. `Ok(None)`: no such socket.
    pub fn tcp_client_cookie(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
    ) -> io::Result<Option<u64>> {
        // TCP lookups take the socket's own address as src: the client's.
        self.lookup(Transport::Tcp, client, server)
    }

    /// Exact lookup with the request's `idiag_src`/`idiag_dst` as given (see the module documentation for which is
    /// which per protocol).
    pub fn lookup(
        &mut self,
        transport: Transport,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> io::Result<Option<u64>> {
        let (family, src_ip, dst_ip) = match (unmap(src.ip()), unmap(dst.ip())) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut a = [0u8; 16];
                let mut b = [0u8; 16];
                a[..4].copy_from_slice(&s.octets());
                b[..4].copy_from_slice(&d.octets());
                (libc::AF_INET as u8, a, b)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => (libc::AF_INET6 as u8, s.octets(), d.octets()),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("sock_diag lookup across address families: {src} and {dst}"),
                ));
            }
        };
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = [0u8; NLMSG_HDR_LEN + REQ_V2_LEN];
        req[0..4].copy_from_slice(&((NLMSG_HDR_LEN + REQ_V2_LEN) as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        req[8..12].copy_from_slice(&seq.to_ne_bytes());
        // nlmsg_pid 0: the kernel.
        let body = &mut req[NLMSG_HDR_LEN..];
        body[0] = family;
        body[1] = match transport {
            Transport::Udp => libc::IPPROTO_UDP as u8,
            Transport::Tcp => libc::IPPROTO_TCP as u8,
        };
        // idiag_ext 0, pad 0; idiag_states: every state (exact lookups ignore it, but be explicit).
        body[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        let id = &mut body[8..];
        id[0..2].copy_from_slice(&src.port().to_be_bytes());
        id[2..4].copy_from_slice(&dst.port().to_be_bytes());
        id[4..20].copy_from_slice(&src_ip);
        id[20..36].copy_from_slice(&dst_ip);
        // idiag_if 0 (any interface).
        id[40..44].copy_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
        id[44..48].copy_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());

        // SAFETY: an all-zero sockaddr_nl is valid; the fields are set below.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `req` and `kernel` outlive the call and the lengths passed are theirs.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&raw const kernel).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            // SAFETY: `buf` is a live, writable buffer of the length passed.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            match parse_reply(&self.buf[..n as usize], seq)? {
                Some(answer) => return Ok(answer),
                // A late reply to an earlier request (one that timed out): keep reading.
                None => continue,
            }
        }
    }
}

/// `Ok(None)`: the datagram holds no message for `seq`. `Ok(Some(None))`: the kernel found no socket.
fn parse_reply(mut data: &[u8], seq: u32) -> io::Result<Option<Option<u64>>> {
    while data.len() >= NLMSG_HDR_LEN {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let msg_seq = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
        if len < NLMSG_HDR_LEN || len > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "sock_diag: malformed netlink message",
            ));
        }
        let payload = &data[NLMSG_HDR_LEN..len];
        if msg_seq == seq {
            match kind {
                NLMSG_ERROR => {
                    if payload.len() < 4 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "sock_diag: short NLMSG_ERROR",
                        ));
                    }
                    let errno =
                        -i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    return match errno {
                        libc::ENOENT => Ok(Some(None)),
                        0 => Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "sock_diag: ack without an answer",
                        )),
                        e => Err(io::Error::from_raw_os_error(e)),
                    };
                }
                NLMSG_DONE => return Ok(Some(None)),
                SOCK_DIAG_BY_FAMILY => {
                    if payload.len() < DIAG_MSG_LEN {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "sock_diag: short inet_diag_msg",
                        ));
                    }
                    let c = &payload[DIAG_MSG_COOKIE_OFFSET..DIAG_MSG_COOKIE_OFFSET + 8];
                    let lo = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as u64;
                    let hi = u32::from_ne_bytes([c[4], c[5], c[6], c[7]]) as u64;
                    return Ok(Some(Some(lo | (hi << 32))));
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("sock_diag: unexpected netlink message type {other}"),
                    ));
                }
            }
        }
        // NLMSG_ALIGN(len)
        let next = (len + 3) & !3;
        if next >= data.len() {
            break;
        }
        data = &data[next..];
    }
    Ok(None)
}

/// `::ffff:a.b.c.d` as `a.b.c.d`: the kernel keeps such a peer in the IPv4 tables.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `SO_COOKIE` of a socket: the value the dataplane keys steered flows by and [`SockDiag`] lookups return.
pub fn socket_cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the option value points to a live u64 and `len` holds its size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsFd;
    use std::time::Instant;

    fn udp_case(bind: &str) {
        let server = UdpSocket::bind(bind).unwrap();
        let server_addr = server.local_addr().unwrap();
        let client = UdpSocket::bind(bind).unwrap();
        client.send_to(b"q", server_addr).unwrap();
        let mut buf = [0u8; 16];
        let (_, from) = server.recv_from(&mut buf).unwrap();
        let expected = socket_cookie(client.as_fd()).unwrap();
        let mut diag = SockDiag::new().unwrap();
        assert_eq!(
            diag.udp_client_cookie(from, server_addr).unwrap(),
            Some(expected)
        );
        // The orientation matters: with the client as src, UDP finds the socket that would receive from the
        // client, the server's own.
        let server_cookie = socket_cookie(server.as_fd()).unwrap();
        assert_eq!(
            diag.lookup(Transport::Udp, from, server_addr).unwrap(),
            Some(server_cookie)
        );
        // A connected client socket (the glibc resolver connects its UDP socket) is found the same way.
        let connected = UdpSocket::bind(bind).unwrap();
        connected.connect(server_addr).unwrap();
        connected.send(b"q").unwrap();
        let (_, from2) = server.recv_from(&mut buf).unwrap();
        let expected2 = socket_cookie(connected.as_fd()).unwrap();
        assert_ne!(expected, expected2);
        assert_eq!(
            diag.udp_client_cookie(from2, server_addr).unwrap(),
            Some(expected2)
        );
        drop(connected);
        assert_eq!(diag.udp_client_cookie(from2, server_addr).unwrap(), None);
    }

    fn tcp_case(bind: &str) {
        let listener = TcpListener::bind(bind).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let expected = socket_cookie(client.as_fd()).unwrap();
        let server_side = socket_cookie(accepted.as_fd()).unwrap();
        assert_ne!(expected, server_side);
        let mut diag = SockDiag::new().unwrap();
        assert_eq!(
            diag.tcp_client_cookie(peer, accepted.local_addr().unwrap())
                .unwrap(),
            Some(expected)
        );
        // The other orientation names the proxy's accepted socket, not the client.
        assert_eq!(
            diag.lookup(Transport::Tcp, accepted.local_addr().unwrap(), peer)
                .unwrap(),
            Some(server_side)
        );
    }

    #[test]
    fn udp_v4_lookup_returns_the_clients_so_cookie() {
        udp_case("127.0.0.1:0");
    }

    #[test]
    fn udp_v6_lookup_returns_the_clients_so_cookie() {
        udp_case("[::1]:0");
    }

    #[test]
    fn tcp_v4_lookup_returns_the_clients_so_cookie() {
        tcp_case("127.0.0.1:0");
    }

    #[test]
    fn tcp_v6_lookup_returns_the_clients_so_cookie() {
        tcp_case("[::1]:0");
    }

    #[test]
    fn mixed_families_are_rejected() {
        let mut diag = SockDiag::new().unwrap();
        let err = diag
            .udp_client_cookie("127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// Prints the cost of one lookup; it is on every query's path. `--ignored --nocapture` to see it.
    #[test]
    #[ignore]
    fn lookup_cost() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"q", server.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 16];
        let (_, from) = server.recv_from(&mut buf).unwrap();
        let mut diag = SockDiag::new().unwrap();
        let mut times = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let t = Instant::now();
            assert!(diag
                .udp_client_cookie(from, server.local_addr().unwrap())
                .unwrap()
                .is_some());
            times.push(t.elapsed());
        }
        report("UDP", &mut times);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let local = accepted.local_addr().unwrap();
        times.clear();
        for _ in 0..20_000 {
            let t = Instant::now();
            assert!(diag.tcp_client_cookie(peer, local).unwrap().is_some());
            times.push(t.elapsed());
        }
        report("TCP", &mut times);
    }

    fn report(what: &str, times: &mut [std::time::Duration]) {
        times.sort();
        println!(
            "sock_diag {what} lookup over {} runs: p50 {:?} p99 {:?}",
            times.len(),
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    }
}
