// Command argocd-lua runs an Argo CD resource customization script (a health check, an
// action discovery or a resource action) on one object, in gopher-lua and the way Argo CD's
// util/lua package does, so that tests/argocd.rs proves the scripts in docs/argocd work in
// the VM Argo CD really uses (Lua 5.1 semantics, a reduced standard library), not only in
// the reference Lua the other half of those tests runs.
//
// What it mirrors, and why each part matters to a script:
//   - the state is made with SkipOpenLibs; only package, base, table and an os library
//     holding nothing but time and date are opened (no string, math, io or debug library:
//     string.format or s:sub fail in Argo CD);
//   - the object is the global `obj`, converted from JSON (numbers are floats, arrays are
//     sequences) and the script runs under a 1 s deadline;
//   - the script's return value must be a table and is turned into JSON like Argo CD's
//     encoder does: an empty table is an empty array, a table with keys 1..n an array;
//   - health: the status must be one Argo CD knows, else the result is Unknown;
//   - action: a list of {operation = "create" | "patch", resource = ...} (an object alone is
//     a patch of obj, with maps that came back as empty arrays restored from obj).
//
// Usage: argocd-lua health|discovery|action SCRIPT.lua < OBJECT.json
// Prints the result as JSON on stdout; a script error goes to stderr, with exit status 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func main() {
	if len(os.Args) != 3 {
		fail(errors.New("usage: argocd-lua health|discovery|action SCRIPT.lua < OBJECT.json"))
	}
	mode, path := os.Args[1], os.Args[2]
	script, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	var obj map[string]interface{}
	if err := json.NewDecoder(os.Stdin).Decode(&obj); err != nil {
		fail(fmt.Errorf("the object on stdin is not JSON: %w", err))
	}
	returned, err := run(obj, string(script))
	if err != nil {
		fail(err)
	}
	var out interface{}
	switch mode {
	case "health":
		out, err = health(returned)
	case "discovery":
		out, err = discovery(returned)
	case "action":
		out, err = action(returned, obj)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}

// run executes the script with `obj` set and returns its value, converted to Go.
func run(obj map[string]interface{}, script string) (interface{}, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, lua.OpenOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	restrictOs(l)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	returned := l.Get(-1)
	if returned.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	return fromLua(returned)
}

// restrictOs keeps os.time and os.date (gopher-lua's own, which Argo CD's safe os library is
// a copy of) and drops the rest of os, for `os` and for `require("os")` alike.
func restrictOs(l *lua.LState) {
	full, _ := l.GetGlobal(lua.OsLibName).(*lua.LTable)
	safe := l.NewTable()
	for _, name := range []string{"time", "date"} {
		safe.RawSetString(name, full.RawGetString(name))
	}
	l.SetGlobal(lua.OsLibName, safe)
	l.SetField(l.GetField(l.Get(lua.RegistryIndex), "_LOADED"), lua.OsLibName, safe)
}

func toLua(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]interface{}:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

func fromLua(value lua.LValue) (interface{}, error) {
	switch v := value.(type) {
	case lua.LBool:
		return bool(v), nil
	case lua.LNumber:
		return float64(v), nil
	case lua.LString:
		return string(v), nil
	case *lua.LNilType:
		return nil, nil
	case *lua.LTable:
		if n := v.MaxN(); n > 0 {
			items := make([]interface{}, 0, n)
			for i := 1; i <= n; i++ {
				item, err := fromLua(v.RawGetInt(i))
				if err != nil {
					return nil, err
				}
				items = append(items, item)
			}
			return items, nil
		}
		fields := map[string]interface{}{}
		var err error
		v.ForEach(func(key, item lua.LValue) {
			name, ok := key.(lua.LString)
			if !ok {
				err = fmt.Errorf("cannot encode a table key of type %s", key.Type())
				return
			}
			fields[string(name)], err = fromLua(item)
		})
		if err != nil {
			return nil, err
		}
		if len(fields) == 0 {
			return []interface{}{}, nil
		}
		return fields, nil
	}
	return nil, fmt.Errorf("cannot encode a %s", value.Type())
}

func health(returned interface{}) (interface{}, error) {
	hs, ok := returned.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("a health check must return a table with keys, got %v", returned)
	}
	switch hs["status"] {
	case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
		return map[string]interface{}{"status": hs["status"], "message": hs["message"]}, nil
	}
	return map[string]interface{}{"status": "Unknown", "message": "Lua returned an invalid health status"}, nil
}

// discovery lists the actions offered, by name, each with whether it is disabled.
func discovery(returned interface{}) (interface{}, error) {
	actions := []map[string]interface{}{}
	offered, ok := returned.(map[string]interface{})
	if !ok {
		if list, isList := returned.([]interface{}); isList && len(list) == 0 {
			return actions, nil
		}
		return nil, fmt.Errorf("a discovery must return a table of actions by name, got %v", returned)
	}
	for name, value := range offered {
		action := map[string]interface{}{"name": name, "disabled": false}
		if settings, ok := value.(map[string]interface{}); ok {
			for key, setting := range settings {
				action[key] = setting
			}
			if _, isBool := action["disabled"].(bool); !isBool {
				action["disabled"] = false
			}
		}
		actions = append(actions, action)
	}
	sort.Slice(actions, func(i, j int) bool {
		return actions[i]["name"].(string) < actions[j]["name"].(string)
	})
	return actions, nil
}

// action returns the impacted resources as Argo CD applies them.
func action(returned interface{}, obj map[string]interface{}) (interface{}, error) {
	if patched, ok := returned.(map[string]interface{}); ok {
		return []interface{}{map[string]interface{}{
			"operation": "patch", "resource": restoreMaps(patched, obj),
		}}, nil
	}
	list, _ := returned.([]interface{})
	for _, item := range list {
		impacted, ok := item.(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("an impacted resource must be a table, got %v", item)
		}
		resource, ok := impacted["resource"].(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("an impacted resource needs a resource table, got %v", impacted["resource"])
		}
		switch impacted["operation"] {
		case "patch":
			impacted["resource"] = restoreMaps(resource, obj)
		case "create":
		default:
			return nil, fmt.Errorf("unsupported operation: %v", impacted["operation"])
		}
	}
	return list, nil
}

// restoreMaps undoes what the encoder does to an empty table that was a map in obj: it came
// back as an empty array, and a patch must not turn the map into one.
func restoreMaps(patched, original map[string]interface{}) map[string]interface{} {
	for key, value := range patched {
		before, ok := original[key]
		if !ok {
			continue
		}
		switch now := value.(type) {
		case map[string]interface{}:
			if was, isMap := before.(map[string]interface{}); isMap {
				patched[key] = restoreMaps(now, was)
			}
		case []interface{}:
			if was, isMap := before.(map[string]interface{}); isMap && len(now) == 0 {
				patched[key] = was
			}
		}
	}
	return patched
}
