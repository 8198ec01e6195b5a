-- Certificates for the TLS specs, made at test time with the `openssl`
-- command into a private temporary directory:
--
--   local certs = require "helpers.certs"
--   local c = certs.make()      -- once per spec file; c:remove() in teardown
--   c.ca                        -- the test CA's certificate (PEM file)
--   c.server_cert, c.server_key -- localhost, 127.0.0.1 and ::1, by the CA
--   c.expired_cert, c.expired_key   -- same names, valid 2020-01-01..2020-02-01
--   c.other_cert, c.other_key   -- only other.example (and 10.9.9.9)
--   c.noip_cert, c.noip_key     -- localhost only: no IP SAN
--   c.nosan_cert, c.nosan_key   -- CN=localhost and no SAN at all
--   c.self_cert, c.self_key     -- self-signed for localhost and 127.0.0.1
--   c.client_cert, c.client_key -- a client certificate (CN=bsdsocket client)
--   c.chain                     -- server cert followed by the CA (one file)
--   c.deep_client, c.deep_client_key -- a client certificate issued by an
--                               intermediate CA, followed by it (one file)
--   c.dir                       -- the directory
--   c:server_ctx([extra])       -- tls.context of mode "server" with the
--                               server certificate, plus the fields of extra
--   c:client_ctx([extra])       -- tls.context trusting the CA, plus extra
-- Keys are EC P-256 (fast to make). Everything is removed by c:remove().
local net = require "helpers.net"

local M = {}

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  if not ok then error("certs: command failed: " .. cmd, 2) end
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

function M.make()
  local d = net.tmpdir()
  local dir = d.dir
  local q = net.shquote
  local function p(name) return dir .. "/" .. name end
  local function key(name)
    sh("openssl ecparam -name prime256v1 -genkey -noout -out " .. q(p(name .. ".key")))
    return p(name .. ".key")
  end
  local function ext(name, text)
    write(p(name .. ".ext"), text)
    return p(name .. ".ext")
  end
  -- the CA
  key("ca")
  sh("openssl req -x509 -new -key " .. q(p("ca.key")) .. " -subj '/CN=bsdsocket test CA' "
    .. "-days 2 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
    .. "-out " .. q(p("ca.pem")))
  -- leaf certificates signed by the CA
  local serial = 100
  local function leaf(name, cn, san, usage)
    key(name)
    sh("openssl req -new -key " .. q(p(name .. ".key")) .. " -subj " .. q("/CN=" .. cn)
      .. " -out " .. q(p(name .. ".csr")))
    local e = ext(name, "basicConstraints=CA:FALSE\nextendedKeyUsage=" .. usage .. "\n"
      .. (san and ("subjectAltName=" .. san .. "\n") or ""))
    serial = serial + 1
    sh("openssl x509 -req -in " .. q(p(name .. ".csr")) .. " -CA " .. q(p("ca.pem"))
      .. " -CAkey " .. q(p("ca.key")) .. " -set_serial " .. serial .. " -days 2 -extfile " .. q(e)
      .. " -out " .. q(p(name .. ".pem")))
  end
  leaf("server", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", "serverAuth")
  leaf("other", "other.example", "DNS:other.example,IP:10.9.9.9", "serverAuth")
  leaf("noip", "localhost", "DNS:localhost", "serverAuth")
  leaf("nosan", "localhost", nil, "serverAuth")
  leaf("client", "bsdsocket client", nil, "clientAuth")
  -- an intermediate CA and a client certificate it issued
  key("inter")
  sh("openssl req -new -key " .. q(p("inter.key")) .. " -subj '/CN=bsdsocket intermediate'"
    .. " -out " .. q(p("inter.csr")))
  sh("openssl x509 -req -in " .. q(p("inter.csr")) .. " -CA " .. q(p("ca.pem")) .. " -CAkey "
    .. q(p("ca.key")) .. " -set_serial 90 -days 2 -extfile "
    .. q(ext("inter", "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"))
    .. " -out " .. q(p("inter.pem")))
  key("deep")
  sh("openssl req -new -key " .. q(p("deep.key")) .. " -subj '/CN=bsdsocket deep client'"
    .. " -out " .. q(p("deep.csr")))
  sh("openssl x509 -req -in " .. q(p("deep.csr")) .. " -CA " .. q(p("inter.pem")) .. " -CAkey "
    .. q(p("inter.key")) .. " -set_serial 91 -days 2 -extfile "
    .. q(ext("deep", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"))
    .. " -out " .. q(p("deep.pem")))
  -- expired: `openssl ca` sets a start and end date in the past
  key("expired")
  sh("openssl req -new -key " .. q(p("expired.key")) .. " -subj '/CN=localhost' -out "
    .. q(p("expired.csr")))
  write(p("index.txt"), "")
  write(p("ca.cnf"), table.concat({
    "[ca]", "default_ca = tca", "[tca]", "dir = " .. dir, "database = $dir/index.txt",
    "new_certs_dir = $dir", "serial = $dir/serial", "default_md = sha256",
    "policy = anything", "copy_extensions = none", "unique_subject = no",
    "[anything]", "commonName = supplied", "[ext]", "basicConstraints = CA:FALSE",
    "extendedKeyUsage = serverAuth", "subjectAltName = DNS:localhost,IP:127.0.0.1", "",
  }, "\n"))
  write(p("serial"), "1000\n")
  sh("openssl ca -batch -config " .. q(p("ca.cnf")) .. " -cert " .. q(p("ca.pem")) .. " -keyfile "
    .. q(p("ca.key")) .. " -startdate 20200101000000Z -enddate 20200201000000Z -extensions ext"
    .. " -in " .. q(p("expired.csr")) .. " -out " .. q(p("expired.pem")))
  -- self-signed
  key("self")
  sh("openssl req -x509 -new -key " .. q(p("self.key")) .. " -subj '/CN=localhost' -days 2 "
    .. "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -out " .. q(p("self.pem")))
  -- server certificate followed by the CA
  local function read(path)
    local f = assert(io.open(path))
    local t = f:read("a")
    f:close()
    return t
  end
  write(p("chain.pem"), read(p("server.pem")) .. read(p("ca.pem")))
  write(p("deepchain.pem"), read(p("deep.pem")) .. read(p("inter.pem")))
  local c = {
    dir = dir, ca = p("ca.pem"), chain = p("chain.pem"),
    server_cert = p("server.pem"), server_key = p("server.key"),
    expired_cert = p("expired.pem"), expired_key = p("expired.key"),
    other_cert = p("other.pem"), other_key = p("other.key"),
    noip_cert = p("noip.pem"), noip_key = p("noip.key"),
    nosan_cert = p("nosan.pem"), nosan_key = p("nosan.key"),
    self_cert = p("self.pem"), self_key = p("self.key"),
    client_cert = p("client.pem"), client_key = p("client.key"),
    deep_client = p("deepchain.pem"), deep_client_key = p("deep.key"),
    read = function(_, path) return read(path) end,
    remove = function() d:remove() end,
  }
  local function context(o, extra)
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(require("bsdsocket.tls").context(o))
  end
  function c.server_ctx(self, extra)
    return context({ mode = "server", certfile = self.server_cert, keyfile = self.server_key }, extra)
  end
  function c.client_ctx(self, extra)
    return context({ cafile = self.ca }, extra)
  end
  return c
end

return M
