// A minimal Instance/0.5.0 plugin written from the protocol's description alone, with
// Go's standard library only: the tests build it and drive it through our client, to
// prove a plugin in another language works with our group controller.
//
// Instances live in memory. Usage: goplugin -socket PATH
// Provision fails with the text of Spec.Properties.Fail when it is set; Validate
// refuses properties that are not a JSON object.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

type description struct {
	ID        string
	LogicalID *string
	Tags      map[string]string
}

type spec struct {
	Properties json.RawMessage
	Tags       map[string]string
	LogicalID  *string
}

type plugin struct {
	mu        sync.Mutex
	next      int
	instances map[string]*description
}

type rpcError struct {
	Code    int         `json:"code"`
	Message string      `json:"message"`
	Data    interface{} `json:"data"`
}

// call runs one method; the result is any JSON-encodable value.
func (p *plugin) call(method string, params json.RawMessage) (interface{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	decode := func(into interface{}) error {
		if len(params) == 0 || string(params) == "null" {
			return nil
		}
		return json.Unmarshal(params, into)
	}
	switch method {
	case "Handshake.Implements":
		return map[string]interface{}{"APIs": []map[string]string{{"Name": "Instance", "Version": "0.5.0"}}}, nil
	case "Handshake.Types":
		return map[string]interface{}{"Types": map[string][]string{"Instance/0.5.0": {"."}}}, nil
	case "Instance.Validate":
		var req struct{ Properties json.RawMessage }
		if err := decode(&req); err != nil {
			return nil, err
		}
		var object map[string]interface{}
		if len(req.Properties) > 0 && string(req.Properties) != "null" && json.Unmarshal(req.Properties, &object) != nil {
			return nil, fmt.Errorf("properties must be a JSON object")
		}
		return map[string]interface{}{"Type": "", "OK": true}, nil
	case "Instance.Provision":
		var req struct{ Spec spec }
		if err := decode(&req); err != nil {
			return nil, err
		}
		var failing struct{ Fail string }
		if json.Unmarshal(req.Spec.Properties, &failing) == nil && failing.Fail != "" {
			return nil, fmt.Errorf("%s", failing.Fail)
		}
		p.next++
		id := fmt.Sprintf("go-%d", p.next)
		tags := map[string]string{}
		for k, v := range req.Spec.Tags {
			tags[k] = v
		}
		p.instances[id] = &description{ID: id, LogicalID: req.Spec.LogicalID, Tags: tags}
		return map[string]interface{}{"Type": "", "ID": id}, nil
	case "Instance.Label":
		var req struct {
			Instance string
			Labels   map[string]string
		}
		if err := decode(&req); err != nil {
			return nil, err
		}
		found, ok := p.instances[req.Instance]
		if !ok {
			return nil, fmt.Errorf("instance %s not found", req.Instance)
		}
		for k, v := range req.Labels {
			found.Tags[k] = v
		}
		return map[string]interface{}{"Type": "", "OK": true}, nil
	case "Instance.Destroy":
		var req struct{ Instance string }
		if err := decode(&req); err != nil {
			return nil, err
		}
		if _, ok := p.instances[req.Instance]; !ok {
			return nil, fmt.Errorf("instance %s not found", req.Instance)
		}
		delete(p.instances, req.Instance)
		return map[string]interface{}{"Type": "", "OK": true}, nil
	case "Instance.DescribeInstances":
		var req struct{ Tags map[string]string }
		if err := decode(&req); err != nil {
			return nil, err
		}
		var matching []description // nil when none: encoded as null, as InfraKit's Go server does
	next:
		for _, d := range p.instances {
			for k, v := range req.Tags {
				if d.Tags[k] != v {
					continue next
				}
			}
			matching = append(matching, *d)
		}
		return map[string]interface{}{"Type": "", "Descriptions": matching}, nil
	}
	return nil, fmt.Errorf("rpc: can't find method %q", method)
}

func (p *plugin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "rpc: POST method required, received "+r.Method, http.StatusMethodNotAllowed)
		return
	}
	var req struct {
		Method string
		Params json.RawMessage
		ID     json.RawMessage
	}
	answer := map[string]interface{}{"jsonrpc": "2.0"}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		answer["error"], answer["id"] = rpcError{-32700, err.Error(), nil}, nil
	} else if result, err := p.call(req.Method, req.Params); err != nil {
		answer["error"], answer["id"] = rpcError{-32000, err.Error(), nil}, req.ID
	} else {
		answer["result"], answer["id"] = result, req.ID
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(answer)
}

func main() {
	socket := flag.String("socket", "", "unix socket to listen on")
	flag.Parse()
	os.Remove(*socket) // a stale socket from an earlier run
	listener, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		listener.Close() // removes the socket file
		os.Exit(0)
	}()
	fmt.Fprintln(os.Stderr, "Listening at:", *socket)
	http.Serve(listener, &plugin{instances: map[string]*description{}})
}
