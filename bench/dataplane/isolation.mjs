// Own network namespaces and cgroups for the dataplane benchmarks and root tests: created under a parent
// named for this process, removed in reverse order by cleanup() even after a failure. Never touches the
// host's own cgroups, routes or firewall: iptables only ever runs inside a namespace created here.

import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

/** The cgroup2 mount point, read from /proc/self/mountinfo (hybrid hosts mount it at /sys/fs/cgroup/unified). */
export function cgroup2Mount() {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ')
    if (right === undefined) continue
    if (right.split(' ')[0] === 'cgroup2') return left.split(' ')[4]
  }
  throw new Error('no cgroup2 mount in /proc/self/mountinfo')
}

export function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0
}

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 1 << 28, ...opts }).toString()
}

/** Every resource made through it is undone by cleanup(), last made first. */
export class Isolation {
  constructor(tag) {
    this.tag = `${tag}-${process.pid}`
    this.undo = []
    this.cgroupParent = null
  }

  /** A cgroup directory `<mount>/<tag>/<rel>` (the parent is created on first use). */
  cgroup(rel) {
    if (this.cgroupParent === null) {
      this.cgroupParent = path.join(cgroup2Mount(), this.tag)
      fs.mkdirSync(this.cgroupParent)
      this.undo.push(() => removeCgroupTree(this.cgroupParent))
    }
    const dir = path.join(this.cgroupParent, rel)
    fs.mkdirSync(dir, { recursive: true })
    return dir
  }

  /** A network namespace with `lo` up; `sysctls` are applied inside it. */
  netns(suffix, sysctls = {}) {
    const name = `${this.tag}-${suffix}`.slice(0, 60)
    run('ip', ['netns', 'add', name])
    this.undo.push(() => run('ip', ['netns', 'del', name]))
    run('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
    for (const [k, v] of Object.entries(sysctls)) run('ip', ['netns', 'exec', name, 'sysctl', '-qw', `${k}=${v}`])
    return name
  }

  /** A bpffs directory path for pins (the loader creates it; cleanup removes what is left). */
  pinDir(suffix) {
    const dir = path.join('/sys/fs/bpf', `${this.tag}-${suffix}`)
    this.undo.push(() => fs.rmSync(dir, { recursive: true, force: true }))
    return dir
  }

  /** Registers an extra undo step (run before the resources made earlier). */
  defer(fn) {
    this.undo.push(fn)
  }

  async cleanup() {
    const errors = []
    while (this.undo.length > 0) {
      const step = this.undo.pop()
      try {
        await step()
      } catch (error) {
        errors.push(error)
      }
    }
    return errors
  }
}

/** Moves any leftover process to the parent's parent, then removes the cgroup directories bottom-up. */
function removeCgroupTree(dir) {
  if (!fs.existsSync(dir)) return
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(path.join(dir, entry.name))
  }
  const procs = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)
  for (const pid of procs) {
    try {
      process.kill(Number(pid), 'SIGKILL')
    } catch {
      // already gone
    }
  }
  for (let attempt = 0; ; attempt++) {
    try {
      fs.rmdirSync(dir)
      return
    } catch (error) {
      if (error.code !== 'EBUSY' || attempt > 50) throw error
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
    }
  }
}

/**
 * Runs argv in `cgroupDir` and `netns`: joins the cgroup first (`ip netns exec` remounts /sys and would hide
 * the cgroup tree), then enters the namespace. Resolves with {code, stdout, stderr}.
 */
export function runIn(cgroupDir, netns, argv, { timeoutMs = 120_000 } = {}) {
  const quoted = argv.map((a) => `'${String(a).replaceAll("'", "'\\''")}'`).join(' ')
  const script = `echo $$ > '${path.join(cgroupDir, 'cgroup.procs')}' && exec ip netns exec '${netns}' ${quoted}`
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

export { run }
