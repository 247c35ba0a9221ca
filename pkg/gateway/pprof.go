package gateway

import (
	"net/http/pprof"

	"github.com/gin-gonic/gin"
)

// profileRoutes serves net/http/pprof under /debug/pprof/ of g (the /debug
// group, behind adminAuth): the index, the CPU profile
// (/debug/pprof/profile?seconds=N), the trace and every named profile
// (heap, goroutine, allocs, block, mutex, …).
func profileRoutes(g *gin.RouterGroup) {
	g.GET("/pprof/", gin.WrapF(pprof.Index))
	g.GET("/pprof/cmdline", gin.WrapF(pprof.Cmdline))
	g.GET("/pprof/profile", gin.WrapF(pprof.Profile))
	g.GET("/pprof/symbol", gin.WrapF(pprof.Symbol))
	g.POST("/pprof/symbol", gin.WrapF(pprof.Symbol))
	g.GET("/pprof/trace", gin.WrapF(pprof.Trace))
	g.GET("/pprof/:name", func(c *gin.Context) { pprof.Handler(c.Param("name")).ServeHTTP(c.Writer, c.Request) })
}
