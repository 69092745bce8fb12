// Probe process for __test__/interceptor.test.mjs: runs inside the test cgroup and netns, makes one
// connection attempt and prints {pid, errno} as JSON. `tcp` uses connect() (cgroup/connect4); `udp` sends one
// datagram on an unconnected socket (cgroup/sendmsg4). An optional fourth argument, hex, first renames the
// process to those bytes (the kernel keeps at most 15 of them, UTF-8 or not), as prctl(PR_SET_NAME) would.
import fs from 'node:fs'
import net from 'node:net'
import dgram from 'node:dgram'

const [proto, ip, portText, commHex] = process.argv.slice(2)
const port = Number(portText)
if (commHex !== undefined) fs.writeFileSync('/proc/self/comm', Buffer.from(commHex, 'hex'))
const report = (errno) => {
  process.stdout.write(JSON.stringify({ pid: process.pid, errno }) + '\n')
  process.exit(0)
}

if (proto === 'tcp') {
  const s = net.connect({ host: ip, port })
  s.setTimeout(3000, () => report('TIMEOUT'))
  s.on('connect', () => {
    s.destroy()
    report(null)
  })
  s.on('error', (e) => report(e.code))
} else {
  const s = dgram.createSocket('udp4')
  s.send(Buffer.from('probe'), port, ip, (e) => {
    s.close()
    report(e ? e.code : null)
  })
}
