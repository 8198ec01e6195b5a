std = "lua54"
-- busted's globals, spelled out as well as by std: `luacheck --std lua54`
-- on the command line (as the hooks run it) replaces a std set here
local busted = {
  "describe", "it", "pending", "before_each", "after_each", "setup",
  "teardown", "lazy_setup", "lazy_teardown", "strict_setup",
  "strict_teardown", "finally", "insulate", "expose", "randomize",
  "spy", "stub", "mock", "match",
  assert = { other_fields = true },
}
files["spec"] = { std = "+busted", read_globals = busted }
