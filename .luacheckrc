std = "lua54"
files["spec"] = { std = "+busted" }
