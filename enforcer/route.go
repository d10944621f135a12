package enforcer

import "strings"

// Method indexes; ANY is the fallback for methods a resource does not
// declare on their own.
const (
	mGET = iota
	mPOST
	mPUT
	mPATCH
	mDELETE
	mHEAD
	mOPTIONS
	mANY
	nMethods
)

func methodIndex(m string) int {
	switch m {
	case "GET":
		return mGET
	case "POST":
		return mPOST
	case "PUT":
		return mPUT
	case "PATCH":
		return mPATCH
	case "DELETE":
		return mDELETE
	case "HEAD":
		return mHEAD
	case "OPTIONS":
		return mOPTIONS
	case "ANY":
		return mANY
	}
	return -1
}

// methodRoute is one declared method of one resource of one stage.
type methodRoute struct {
	idx         int    // index within the stage, for per-method state
	resource    string // template, e.g. /items/{id}
	method      string // as declared (GET, ..., ANY)
	keyRequired bool
}

// node is a resource tree node. Literal segments win over {param}, which
// wins over a greedy {proxy+}, as in AWS.
type node struct {
	lit     map[string]*node
	param   *node
	greedy  *node
	methods [nMethods]*methodRoute
}

func (n *node) insert(path string) *node {
	if path == "/" {
		return n
	}
	cur := n
	for _, seg := range strings.Split(path[1:], "/") {
		switch {
		case strings.HasSuffix(seg, "+}"):
			if cur.greedy == nil {
				cur.greedy = &node{}
			}
			cur = cur.greedy
		case strings.HasPrefix(seg, "{"):
			if cur.param == nil {
				cur.param = &node{}
			}
			cur = cur.param
		default:
			if cur.lit == nil {
				cur.lit = map[string]*node{}
			}
			c := cur.lit[seg]
			if c == nil {
				c = &node{}
				cur.lit[seg] = c
			}
			cur = c
		}
	}
	return cur
}

// match finds the node for path (which starts with '/'). It allocates
// nothing: segments are substrings of path.
func (n *node) match(path string) *node {
	if path == "/" || path == "" {
		return n
	}
	rest := path[1:]
	seg := rest
	i := strings.IndexByte(rest, '/')
	if i >= 0 {
		seg, rest = rest[:i], rest[i:]
	} else {
		rest = ""
	}
	if seg == "" {
		return nil // empty segment: "//" or a trailing slash
	}
	if c := n.lit[seg]; c != nil {
		if m := c.matchRest(rest); m != nil {
			return m
		}
	}
	if n.param != nil {
		if m := n.param.matchRest(rest); m != nil {
			return m
		}
	}
	return n.greedy
}

func (n *node) matchRest(rest string) *node {
	if rest == "" {
		return n
	}
	return n.match(rest)
}

// lookup returns the method route for method on this node, or nil.
func (n *node) lookup(method string) *methodRoute {
	if i := methodIndex(method); i >= 0 && n.methods[i] != nil {
		return n.methods[i]
	}
	return n.methods[mANY]
}
